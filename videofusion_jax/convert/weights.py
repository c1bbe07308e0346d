"""Read PyTorch weight files into float32 numpy arrays, without torch where possible.

`.safetensors` is parsed here directly (an 8-byte header length, a JSON header of
name -> dtype/shape/offsets, then raw little-endian data), so conversion needs neither
torch nor the safetensors package, bf16/fp8 tensors go through `ml_dtypes` (a JAX
dependency) and a truncated file fails naming the tensor that runs past its end.
`.bin` pickles need torch (the `[convert]` extra). Sharded checkpoints
(`*.safetensors.index.json` / `*.bin.index.json`) are read shard by shard.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import ml_dtypes
import numpy as np

_DTYPES = {
  "F64": np.float64,
  "F32": np.float32,
  "F16": np.float16,
  "BF16": ml_dtypes.bfloat16,
  "F8_E4M3": ml_dtypes.float8_e4m3fn,
  "F8_E5M2": ml_dtypes.float8_e5m2,
  "I64": np.int64,
  "I32": np.int32,
  "I16": np.int16,
  "I8": np.int8,
  "U8": np.uint8,
  "BOOL": np.bool_,
}
_MAX_HEADER = 100 * 2**20  # the safetensors format caps its JSON header at 100 MB


def _as_float32(a: np.ndarray) -> np.ndarray:
  """Floating tensors (fp16/bf16/fp8/fp64) become float32; others keep their dtype."""
  if a.dtype.kind == "f" or a.dtype in (
    ml_dtypes.bfloat16,
    ml_dtypes.float8_e4m3fn,
    ml_dtypes.float8_e5m2,
  ):
    return np.asarray(a, np.float32)
  return a


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
  """name -> array (floats as float32) from one `.safetensors` file."""
  path = Path(path)
  with open(path, "rb") as f:  # mapped, not read: a multi-GB file is not copied first
    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else b""
  if len(data) < 8:
    raise ValueError(f"{path} is not a safetensors file: {len(data)} bytes, no header")
  (n,) = struct.unpack("<Q", data[:8])
  if n > _MAX_HEADER or 8 + n > len(data):
    raise ValueError(
      f"{path} is not a valid safetensors file: header length {n} with "
      f"{len(data)} bytes in the file (truncated or another format)"
    )
  try:
    header = json.loads(bytes(data[8 : 8 + n]))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{path} has an unreadable safetensors header ({e})") from e
  body = memoryview(data)[8 + n :]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    dtype = _DTYPES.get(info.get("dtype"))
    if dtype is None:
      raise ValueError(
        f"{path}: tensor {name!r} has dtype {info.get('dtype')!r}; supported: {sorted(_DTYPES)}"
      )
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if end > len(body):
      raise ValueError(
        f"{path} is truncated: tensor {name!r} needs bytes {begin}..{end} "
        f"of the data section, which has {len(body)}"
      )
    if end - begin != expected:
      raise ValueError(
        f"{path}: tensor {name!r} holds {end - begin} bytes; shape {shape} "
        f"of {info['dtype']} needs {expected}"
      )
    out[name] = _as_float32(np.frombuffer(body[begin:end], dtype=dtype).reshape(shape))
  return out


def read_torch_bin(path: str | Path) -> dict[str, np.ndarray]:
  """name -> array from a PyTorch pickle (`.bin`/`.pt`); needs the `[convert]` extra."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
      f"reading {path} (a PyTorch pickle) needs PyTorch: pip install "
      "'videofusion_jax[convert]', or save the weights as .safetensors, which needs "
      "no torch"
    ) from e
  state = torch.load(str(path), map_location="cpu", weights_only=True)
  if not isinstance(state, dict):
    raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
  out = {}
  for name, t in state.items():
    t = t.detach()
    out[name] = (t.float() if t.is_floating_point() else t).numpy()
  return out


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
  """One weight file, or an `*.index.json` naming shards next to it."""
  path = Path(path)
  if path.name.endswith(".index.json"):
    weight_map = json.loads(path.read_text())["weight_map"]
    out = {}
    for shard in sorted(set(weight_map.values())):
      out.update(read_weights(path.parent / shard))
    missing = sorted(set(weight_map) - set(out))
    if missing:
      raise ValueError(f"{path} lists tensors its shards do not hold: {missing[:10]}")
    return out
  if path.suffix == ".safetensors":
    return read_safetensors(path)
  return read_torch_bin(path)


def read_model_config(src: str | Path, *, expected: str, instead: str) -> dict:
  """`src/config.json` of a diffusers/transformers model folder, as a dict.

  Fails naming the path: `expected` says what the folder should hold ("a diffusers
  model folder with config.json and diffusion_pytorch_model.*"), `instead` what to pass
  when `src` is not a model folder ("for a pipeline, pass its U-Net subfolder").
  """
  src = Path(src)
  if not src.is_dir():
    raise FileNotFoundError(f"--src={src} is not a directory (expected {expected})")
  config_file = src / "config.json"
  if not config_file.is_file():
    raise FileNotFoundError(f"{config_file} is missing: {src} is not a model folder ({instead})")
  return read_json(config_file)


def read_json(file: Path) -> dict:
  """A JSON file of a model or pipeline folder; fails naming the file."""
  if not file.is_file():
    raise FileNotFoundError(f"{file} is missing")
  try:
    return json.loads(file.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{file} is not valid JSON ({e})") from e


def find_weights_file(
  folder: str | Path, stem: str = "diffusion_pytorch_model", variant: str | None = None
) -> Path:
  """The weight file of a diffusers model folder, safetensors preferred."""
  folder = Path(folder)
  name = f"{stem}.{variant}" if variant else stem
  candidates = [
    f"{name}.safetensors",
    f"{name}.safetensors.index.json",
    f"{name}.bin",
    f"{name}.bin.index.json",
  ]
  for c in candidates:
    if (folder / c).is_file():
      return folder / c
  raise FileNotFoundError(f"no weights in {folder}: expected one of {candidates}")
