"""diffusers U-Net state dicts -> parameters of our NNX `UNet` (or any of its sub-modules).

The mapping is data, in three tables:
- `LAYER_PARAMS`: per NNX layer type, each parameter's torch name and the transform
  that turns the torch tensor into it (kernels transposed to channels-last);
- `TORCH_MODULE_NAMES`: where a torch module path differs from our module path
  (diffusers' `to_out` is `Sequential(Linear, Dropout)`, so its Linear is `to_out.0`);
- `LEGACY_KEYS`: old diffusers key names, rewritten to current ones before matching.
Since our modules carry diffusers' names, the table is built by walking the abstract NNX
model (`nnx.eval_shape`, no memory) and listing, for every parameter, the torch key it
comes from. Every torch key must be used and every parameter filled with the expected
shape, or conversion fails naming the keys.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from flax import nnx

from videofusion_jax.convert.converted import save_converted
from videofusion_jax.convert.diffusers_config import unet_config_from_diffusers
from videofusion_jax.convert.scheduler import find_scheduler_config
from videofusion_jax.convert.weights import find_weights_file, read_model_config, read_weights
from videofusion_jax.models.unet import UNet, UNetConfig

# NNX layer type -> {our parameter: (torch parameter, transform)}.
LAYER_PARAMS: dict[type, dict[str, tuple[str, str]]] = {
  nnx.Conv: {"kernel": ("weight", "conv"), "bias": ("bias", "copy")},
  nnx.Linear: {"kernel": ("weight", "linear"), "bias": ("bias", "copy")},
  nnx.GroupNorm: {"scale": ("weight", "copy"), "bias": ("bias", "copy")},
  nnx.LayerNorm: {"scale": ("weight", "copy"), "bias": ("bias", "copy")},
  nnx.Embed: {"embedding": ("weight", "copy")},
}

# torch (out, in, *kernel) -> ours (*kernel, in, out); torch Linear (out, in) -> (in, out).
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
  "copy": lambda w: w,
  "linear": lambda w: w.T,
  "conv": lambda w: np.transpose(w, tuple(range(2, w.ndim)) + (1, 0)),
}

# (regex on our module path, replacement giving the torch module path).
TORCH_MODULE_NAMES: tuple[tuple[str, str], ...] = ((r"(^|\.)to_out$", r"\1to_out.0"),)

# (regex on a torch key, replacement): pre-0.14 attention blocks (DDPM-era checkpoints).
LEGACY_KEYS: tuple[tuple[str, str], ...] = (
  (r"(attentions\.\d+)\.query\.", r"\1.to_q."),
  (r"(attentions\.\d+)\.key\.", r"\1.to_k."),
  (r"(attentions\.\d+)\.value\.", r"\1.to_v."),
  (r"(attentions\.\d+)\.proj_attn\.", r"\1.to_out.0."),
)

# How many keys of each kind a mismatch error lists (a wrong checkpoint can miss thousands).
LIST_LIMIT = 20


@dataclasses.dataclass(frozen=True)
class Entry:
  """One parameter: where it lives in our model, where it comes from, how it changes."""

  path: tuple  # NNX state path, e.g. ("down_blocks", 0, "resnets", 0, "conv1", "kernel")
  torch_key: str  # e.g. "down_blocks.0.resnets.0.conv1.weight"
  transform: str  # a key of TRANSFORMS
  shape: tuple  # our shape


def _torch_module(path: tuple) -> str:
  name = ".".join(str(p) for p in path)
  for pattern, repl in TORCH_MODULE_NAMES:
    name = re.sub(pattern, repl, name)
  return name


def param_table(
  module: nnx.Module, layer_params=None, torch_module=None, table_name: str = "LAYER_PARAMS"
) -> list[Entry]:
  """One `Entry` per parameter of `module` (abstract or concrete), in state order.

  `layer_params` (layer type -> {param: (torch name, transform)}) and `torch_module`
  (NNX path -> torch module name) default to the U-Net's; other converters (CLIP) pass
  their own. Raises ValueError naming any parameter that belongs to no layer type.
  """
  layer_params = LAYER_PARAMS if layer_params is None else layer_params
  torch_module = _torch_module if torch_module is None else torch_module
  entries, covered = [], set()
  for path, node in nnx.iter_graph(module):
    rules = next((r for t, r in layer_params.items() if isinstance(node, t)), None)
    if rules is None:
      continue
    prefix = torch_module(path)
    for name, (torch_name, transform) in rules.items():
      var = getattr(node, name, None)
      if isinstance(var, nnx.Param):
        key = f"{prefix}.{torch_name}" if prefix else torch_name
        entries.append(Entry(tuple(path) + (name,), key, transform, tuple(var.shape)))
        covered.add(tuple(path) + (name,))
  uncovered = [
    ".".join(map(str, p))
    for p, _ in nnx.to_flat_state(nnx.state(module, nnx.Param))
    if tuple(p) not in covered
  ]
  if uncovered:
    raise ValueError(
      f"parameters with no conversion rule (add their layer type to {table_name}): {uncovered}"
    )
  return entries


def normalise_keys(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Rewrite legacy diffusers key names (`LEGACY_KEYS`) to current ones."""
  out = {}
  for key, value in state_dict.items():
    for pattern, repl in LEGACY_KEYS:
      key = re.sub(pattern, repl, key)
    out[key] = value
  return out


def _matches_any(key: str, patterns: Iterable[str]) -> bool:
  return any(re.fullmatch(p, key) for p in patterns)


def convert_state_dict(
  state_dict: Mapping[str, np.ndarray], module: nnx.Module, *, allow_unused: Iterable[str] = ()
) -> dict:
  """A torch state dict -> the pure (nested dict) parameter state of `module`.

  `module` may be abstract (`nnx.eval_shape`). `allow_unused` holds regexes of torch keys
  that may be left over (e.g. buffers); any other unused key, any missing key and any
  shape mismatch raises ValueError naming the keys and shapes.
  """
  return apply_param_table(
    normalise_keys(state_dict), param_table(module), allow_unused=allow_unused
  )


def apply_param_table(
  state_dict: Mapping[str, np.ndarray],
  table: Iterable[Entry],
  *,
  allow_unused: Iterable[str] = (),
  what: str = "the model",
) -> dict:
  """Fill a key table (`Entry` rows: torch key -> path, transform, shape) from a state
  dict: the pure nested dict of parameters. Every converter's table goes through here.

  Every missing, unused and misshapen key is checked before any fails, and one ValueError
  lists them all (the first `LIST_LIMIT` of each kind): a wrong checkpoint is fixed in one
  round, not one key per run.
  """
  table = list(table)
  problems = _key_problems(state_dict, table, allow_unused) + _shape_problems(state_dict, table)
  if problems:
    raise ValueError(f"state dict does not match {what}: " + "; ".join(problems))
  flat = {
    e.path: np.ascontiguousarray(_transformed(state_dict[e.torch_key], e), dtype=np.float32)
    for e in table
  }
  return _nest(flat)


def _key_problems(
  state_dict: Mapping[str, np.ndarray], table: list[Entry], allow_unused: Iterable[str]
) -> list[str]:
  """The table's keys the state dict lacks and its keys the table does not use."""
  missing = [e.torch_key for e in table if e.torch_key not in state_dict]
  used = {e.torch_key for e in table}
  unused = sorted(k for k in state_dict if k not in used and not _matches_any(k, allow_unused))
  problems = []
  if missing:
    problems.append(f"missing torch keys {_some(missing)}")
  if unused:
    problems.append(f"unused torch keys {_some(unused)} (pass allow_unused to skip them)")
  return problems


def _shape_problems(state_dict: Mapping[str, np.ndarray], table: list[Entry]) -> list[str]:
  """One line per present key whose transformed tensor is not the parameter's shape."""
  lines = []
  for e in table:
    if e.torch_key not in state_dict:
      continue  # reported as missing
    w = np.asarray(state_dict[e.torch_key])
    got = _transformed_shape(w, e)
    if got != e.shape:
      path = ".".join(map(str, e.path))
      gives = (
        f"gives {got} for {path}"
        if got is not None
        else f"the {e.transform!r} transform cannot turn into {path}"
      )
      lines.append(
        f"torch key {e.torch_key!r} has shape {tuple(w.shape)}, which {gives}; expected {e.shape}"
      )
  if not lines:
    return []
  more = len(lines) - LIST_LIMIT
  listed = lines[:LIST_LIMIT] + ([f"and {more} more"] if more > 0 else [])
  return [f"{len(lines)} torch keys of the wrong shape:\n  " + "\n  ".join(listed)]


def _transformed(w: np.ndarray, e: Entry) -> np.ndarray:
  return TRANSFORMS[e.transform](np.asarray(w))


def _transformed_shape(w: np.ndarray, e: Entry) -> tuple | None:
  """The shape `e`'s transform gives `w` (views only, no copy); None if it cannot apply
  (a conv kernel of the wrong rank)."""
  try:
    return tuple(_transformed(w, e).shape)
  except ValueError:
    return None


def _some(keys: list[str], limit: int = LIST_LIMIT) -> str:
  """The first `limit` keys and how many more."""
  return f"{keys[:limit]}" + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _nest(flat: Mapping[tuple, np.ndarray]) -> dict:
  out: dict = {}
  for path, value in flat.items():
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = value
  return out


def abstract_unet(config: UNetConfig) -> UNet:
  """Our U-Net with shapes only (no parameter memory)."""
  return nnx.eval_shape(lambda: UNet(config, rngs=nnx.Rngs(0)))


def convert_unet(
  state_dict: Mapping[str, np.ndarray], config: UNetConfig, *, allow_unused: Iterable[str] = ()
) -> dict:
  """A diffusers U-Net state dict -> the pure parameter state of `UNet(config)`."""
  return convert_state_dict(state_dict, abstract_unet(config), allow_unused=allow_unused)


def read_diffusers_unet(
  src: str | Path, *, variant: str | None = None, allow_unused: Iterable[str] = ()
) -> tuple[UNetConfig, dict, dict]:
  """A diffusers U-Net folder -> (UNetConfig, pure params, its config.json as a dict)."""
  hf_config = read_model_config(
    src,
    expected="a diffusers model folder with config.json and diffusion_pytorch_model.*",
    instead="for a pipeline, pass its U-Net subfolder, e.g. decoder/",
  )
  config = unet_config_from_diffusers(hf_config)
  weights = find_weights_file(src, variant=variant)
  params = convert_unet(read_weights(weights), config, allow_unused=allow_unused)
  return config, params, hf_config


def convert_diffusers_unet(
  src: str | Path,
  out: str | Path,
  *,
  variant: str | None = None,
  allow_unused: Iterable[str] = (),
  overwrite: bool = False,
) -> Path:
  """`python -m videofusion_jax.convert diffusers-unet`: read SRC, write OUT (see converted)."""
  config, params, hf_config = read_diffusers_unet(src, variant=variant, allow_unused=allow_unused)
  source = {
    "path": str(Path(src).absolute()),
    "class_name": hf_config.get("_class_name"),
    "diffusers_version": hf_config.get("_diffusers_version"),
    "sample_size": hf_config.get("sample_size"),
  }
  scheduler = find_scheduler_config(src)
  if scheduler is not None:  # how the source was sampled: Pipeline.from_converted reads it
    source["scheduler"] = scheduler
  return save_converted(out, params, config, source=source, overwrite=overwrite)
