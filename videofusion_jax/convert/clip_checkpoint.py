"""The folder a CLIP conversion writes, and `load_clip` to read it back.

  OUT_DIR/params/            orbax checkpoint: {"text": ..., "vision": ...} (towers present)
  OUT_DIR/clip_config.json   CLIPConfig of both towers + where the weights came from
  OUT_DIR/vocab.json, merges.txt (+ tokenizer_config.json)   the BPE tokenizer files

Written under a temporary name and renamed when complete, so a failed conversion leaves
nothing that looks like a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from videofusion_jax.models.clip import (CLIPConfig, CLIPTextModelWithProjection,
                                         CLIPVisionModelWithProjection)
from videofusion_jax.models.clip_tokenizer import CLIPTokenizer

PARAMS_DIR = "params"
CONFIG_FILE = "clip_config.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json",
                   "special_tokens_map.json")
FORMAT_VERSION = 1
TOWERS = {"text": CLIPTextModelWithProjection, "vision": CLIPVisionModelWithProjection}


@dataclasses.dataclass
class LoadedCLIP:
  """A converted CLIP: either tower may be None (a `*WithProjection` checkpoint)."""
  config: CLIPConfig
  text: CLIPTextModelWithProjection | None
  vision: CLIPVisionModelWithProjection | None
  tokenizer: CLIPTokenizer | None
  path: Path

  def require(self, part: str):
    value = getattr(self, part)
    if value is None:
      hint = (f"copy vocab.json and merges.txt into {self.path}" if part == "tokenizer"
              else "convert a CLIPModel or the matching *WithProjection checkpoint")
      raise ValueError(f"the CLIP in {self.path} has no {part}; {hint}")
    return value


def _tower_config(config: CLIPConfig, name: str):
  return config.text if name == "text" else config.vision


def save_clip(out_dir: str | Path, params: Mapping[str, Any], config: CLIPConfig, *,
              source: Mapping[str, Any], tokenizer_dir: Path | None = None,
              overwrite: bool = False) -> Path:
  """Write params + config (+ tokenizer files) to `out_dir` atomically."""
  out_dir = Path(out_dir).absolute()
  if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
    raise FileExistsError(f"{out_dir} exists and is not empty; choose a new --out or pass "
                          "--overwrite")
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(tmp / PARAMS_DIR, dict(params))
      ckptr.wait_until_finished()
    (tmp / CONFIG_FILE).write_text(json.dumps(
        {"format": FORMAT_VERSION, "clip": config.to_dict(), "source": dict(source)},
        indent=2) + "\n")
    if tokenizer_dir is not None:
      for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
          shutil.copyfile(tokenizer_dir / name, tmp / name)
    if out_dir.exists():
      shutil.rmtree(out_dir)
    tmp.rename(out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return out_dir


def load_clip_config(path: str | Path) -> CLIPConfig:
  config_file = Path(path) / CONFIG_FILE
  if not config_file.is_file():
    raise FileNotFoundError(f"{path} is not a converted CLIP: {config_file} is missing "
                            "(write one with `python -m videofusion_jax.convert clip "
                            "--src=TRANSFORMERS_CLIP_DIR --out=OUT`)")
  saved = json.loads(config_file.read_text())
  if saved.get("format") != FORMAT_VERSION:
    raise ValueError(f"{config_file} has format {saved.get('format')}; expected "
                     f"{FORMAT_VERSION}")
  config = CLIPConfig.from_dict(saved["clip"])
  config.validate()
  return config


def _abstract(name: str, config: CLIPConfig) -> nnx.Module:
  return nnx.eval_shape(lambda: TOWERS[name](_tower_config(config, name), rngs=nnx.Rngs(0)))


def load_clip(path: str | Path) -> LoadedCLIP:
  """The converted CLIP in `path`: its towers with their weights, and its tokenizer."""
  path = Path(path).absolute()
  config = load_clip_config(path)
  names = [n for n in TOWERS if _tower_config(config, n) is not None]
  abstract = {n: _abstract(n, config) for n in names}
  target = {n: jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype),
                            nnx.to_pure_dict(nnx.state(m, nnx.Param)))
            for n, m in abstract.items()}
  with ocp.StandardCheckpointer() as ckptr:
    try:
      params = ckptr.restore(path / PARAMS_DIR, target)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
      raise ValueError(f"cannot restore {path / PARAMS_DIR} as the CLIP described by "
                       f"{CONFIG_FILE} ({type(e).__name__}: {e})") from e
  towers = {}
  for n, m in abstract.items():
    state = nnx.state(m, nnx.Param)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params[n]))
    towers[n] = nnx.merge(nnx.graphdef(m), state)
  tokenizer = (CLIPTokenizer.from_dir(path, context_length=config.text.max_position_embeddings)
               if config.text is not None and (path / "vocab.json").is_file() else None)
  return LoadedCLIP(config, towers.get("text"), towers.get("vision"), tokenizer, path)
