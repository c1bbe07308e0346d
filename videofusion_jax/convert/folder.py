"""The folder every conversion writes: orbax parameters + a JSON config, atomically.

  OUT_DIR/params/          orbax checkpoint of the parameters (a nested dict)
  OUT_DIR/<config file>    {"format": 1, "<what>": config fields, "source": provenance}
  OUT_DIR/...              whatever else the kind adds (a config snippet, tokenizer files)

The folder is written under a temporary name and renamed when complete, so a failed
conversion leaves nothing that looks like a checkpoint. A `gs://` OUT_DIR is written
to a local temporary folder and uploaded when complete, its top-level files (the JSON
config a reader looks for) after its sub-folders. U-Nets (`converted.py`), CLIP
(`clip_checkpoint.py`) and the prior (`diffusers_prior.py`) differ only in the config
they store and the modules they restore into.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import jax
import orbax.checkpoint as ocp

from videofusion_jax import storage

PARAMS_DIR = "params"
FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_folder(out_dir: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
  """A temporary sibling of `out_dir` to write into, renamed to `out_dir` when the block
  ends without an exception (replacing it only with `overwrite`), deleted otherwise."""
  out_dir = storage.absolute(out_dir)
  if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
    raise FileExistsError(
      f"{out_dir} exists and is not empty; choose a new --out or pass --overwrite"
    )
  if storage.is_remote(out_dir):
    tmp = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}.partial-"))
    try:
      yield tmp
      if out_dir.exists():
        out_dir.rmtree()
      storage.upload_tree(tmp, out_dir)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
    return
  out_dir.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
  try:
    yield tmp
    if out_dir.exists():
      shutil.rmtree(out_dir)
    tmp.rename(out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def write_converted(
  out_dir: str | Path,
  params: Mapping,
  config_file: str,
  config: Mapping[str, Any],
  *,
  overwrite: bool = False,
  extra: Callable[[Path], None] | None = None,
) -> Path:
  """Write `params` and `config` (JSON) to `out_dir`; `extra(tmp_dir)` adds other files."""
  out_dir = storage.absolute(out_dir)
  with atomic_folder(out_dir, overwrite=overwrite) as tmp:
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(tmp / PARAMS_DIR, dict(params))
      ckptr.wait_until_finished()
    (tmp / config_file).write_text(
      json.dumps({"format": FORMAT_VERSION, **config}, indent=2) + "\n"
    )
    if extra is not None:
      extra(tmp)
  return out_dir


def read_converted_config(
  path: str | Path, config_file: str, what: str, command: str
) -> dict[str, Any]:
  """The JSON config of a converted folder; a missing file names `command` to make it."""
  file = storage.path(path) / config_file
  if not file.is_file():
    raise FileNotFoundError(
      f"{path} is not a converted {what}: {file} is missing (write "
      f"one with `python -m videofusion_jax.convert {command}`)"
    )
  saved = json.loads(file.read_text())
  if saved.get("format") != FORMAT_VERSION:
    raise ValueError(f"{file} has format {saved.get('format')}; expected {FORMAT_VERSION}")
  return saved


def restore_params(path: str | Path, target: Any, what: str, config_file: str) -> Any:
  """The parameters of a converted folder, shaped like `target` (ShapeDtypeStructs)."""
  path = storage.path(path)
  target = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), target)
  with ocp.StandardCheckpointer() as ckptr:
    try:
      return ckptr.restore(path / PARAMS_DIR, target)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
      raise ValueError(
        f"cannot restore {path / PARAMS_DIR} as the {what} described by "
        f"{config_file} ({type(e).__name__}: {e})"
      ) from e
