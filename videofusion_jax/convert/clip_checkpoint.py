"""The folder a CLIP conversion writes, and `load_clip` to read it back.

  OUT_DIR/params/            orbax checkpoint: {"text": ..., "vision": ...} (towers present)
  OUT_DIR/clip_config.json   CLIPConfig of both towers + where the weights came from
  OUT_DIR/vocab.json, merges.txt (+ tokenizer_config.json)   the BPE tokenizer files

Written under a temporary name and renamed when complete, so a failed conversion leaves
nothing that looks like a checkpoint.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax import storage
from videofusion_jax.convert.folder import read_converted_config, restore_params, write_converted
from videofusion_jax.models.clip import (
  CLIPConfig,
  CLIPTextModelWithProjection,
  CLIPVisionModelWithProjection,
)
from videofusion_jax.models.clip_tokenizer import CLIPTokenizer

CONFIG_FILE = "clip_config.json"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
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
      hint = (
        f"copy vocab.json and merges.txt into {self.path}"
        if part == "tokenizer"
        else "convert a CLIPModel or the matching *WithProjection checkpoint"
      )
      raise ValueError(f"the CLIP in {self.path} has no {part}; {hint}")
    return value


def _tower_config(config: CLIPConfig, name: str):
  return config.text if name == "text" else config.vision


def save_clip(
  out_dir: str | Path,
  params: Mapping[str, Any],
  config: CLIPConfig,
  *,
  source: Mapping[str, Any],
  tokenizer_dir: Path | None = None,
  overwrite: bool = False,
) -> Path:
  """Write params + config (+ tokenizer files) to `out_dir` atomically."""

  def tokenizer_files(tmp: Path):
    for name in TOKENIZER_FILES if tokenizer_dir is not None else ():
      if (tokenizer_dir / name).is_file():
        shutil.copyfile(tokenizer_dir / name, tmp / name)

  return write_converted(
    out_dir,
    params,
    CONFIG_FILE,
    {"clip": config.to_dict(), "source": dict(source)},
    overwrite=overwrite,
    extra=tokenizer_files,
  )


def load_clip_config(path: str | Path) -> CLIPConfig:
  saved = read_converted_config(
    path, CONFIG_FILE, "CLIP", "clip --src=TRANSFORMERS_CLIP_DIR --out=OUT"
  )
  config = CLIPConfig.from_dict(saved["clip"])
  config.validate()
  return config


def _abstract(name: str, config: CLIPConfig) -> nnx.Module:
  return nnx.eval_shape(lambda: TOWERS[name](_tower_config(config, name), rngs=nnx.Rngs(0)))


def load_clip(path: str | Path) -> LoadedCLIP:
  """The converted CLIP in `path`: its towers with their weights, and its tokenizer."""
  path = storage.absolute(path)
  config = load_clip_config(path)
  names = [n for n in TOWERS if _tower_config(config, n) is not None]
  abstract = {n: _abstract(n, config) for n in names}
  params = restore_params(
    path,
    {n: nnx.to_pure_dict(nnx.state(m, nnx.Param)) for n, m in abstract.items()},
    "CLIP",
    CONFIG_FILE,
  )
  towers = {}
  for n, m in abstract.items():
    state = nnx.state(m, nnx.Param)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params[n]))
    towers[n] = nnx.merge(nnx.graphdef(m), state)
  tokenizer = (
    CLIPTokenizer.from_dir(path, context_length=config.text.max_position_embeddings)
    if config.text is not None and (path / "vocab.json").is_file()
    else None
  )
  return LoadedCLIP(config, towers.get("text"), towers.get("vision"), tokenizer, path)
