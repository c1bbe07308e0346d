"""diffusers `PriorTransformer` folders (Karlo's / Kandinsky's prior) -> our NNX prior.

  python -m videofusion_jax.convert diffusers-prior --src=PRIOR_DIR --out=OUT_DIR

The key map reuses the U-Net converter's table (`param_table`: per layer type, torch
name and transpose) for every sub-module; the prior's own raw tensors
(`positional_embedding`, `prd_embedding`, `clip_mean`, `clip_std`) are copied by name.
Every torch key must be used and every array filled at its shape. OUT_DIR holds
`params/` (orbax, a nested dict of the model's parameters and statistics) and
`prior_config.json`, written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from videofusion_jax import storage
from videofusion_jax.convert.diffusers_unet import Entry, apply_param_table, param_table
from videofusion_jax.convert.folder import read_converted_config, restore_params, write_converted
from videofusion_jax.convert.weights import find_weights_file, read_model_config, read_weights
from videofusion_jax.models.prior import PriorConfig, PriorTransformer

CONFIG_FILE = "prior_config.json"
# diffusers config.json fields that describe nothing we build.
IGNORED_FIELDS = ("_class_name", "_diffusers_version", "_name_or_path", "_use_default_values")
# Fields of PriorConfig that are ours, not diffusers' (a converted prior has them off).
OUR_FIELDS = ("num_classes", "learned_null", "norm_eps")


def prior_config_from_diffusers(hf: Mapping[str, Any]) -> PriorConfig:
  """A PriorTransformer config.json -> PriorConfig (missing fields: diffusers defaults)."""
  name = hf.get("_class_name", "PriorTransformer")
  if name != "PriorTransformer":
    raise ValueError(
      f"_class_name={name!r}; expected 'PriorTransformer' (a diffusers prior "
      "folder, e.g. Karlo's prior/)"
    )
  known = {f.name for f in dataclasses.fields(PriorConfig)} - set(OUR_FIELDS)
  unknown = sorted(k for k in hf if k not in known and k not in IGNORED_FIELDS)
  if unknown:
    raise ValueError(f"PriorTransformer config fields we do not build: {unknown}")
  return PriorConfig(**{k: v for k, v in hf.items() if k in known}).validate()


def prior_param_table(module: PriorTransformer) -> list[Entry]:
  """One Entry per array of the prior (parameters and clip_mean/clip_std statistics)."""
  entries = []
  for name, value in sorted(vars(module).items()):
    if isinstance(value, nnx.Variable):  # positional/prd embeddings, clip stats
      entries.append(Entry((name,), name, "copy", tuple(value.shape)))
    elif isinstance(value, (nnx.Module, nnx.List)):
      entries += [
        Entry((name,) + e.path, f"{name}.{e.torch_key}", e.transform, e.shape)
        for e in param_table(value)
      ]
  return entries


def convert_prior_state_dict(
  state_dict: Mapping[str, np.ndarray],
  module: PriorTransformer,
  *,
  allow_unused: Iterable[str] = (),
) -> dict:
  """A diffusers PriorTransformer state dict -> the pure state (nested dict) of `module`."""
  return apply_param_table(
    state_dict, prior_param_table(module), allow_unused=allow_unused, what="the prior"
  )


def abstract_prior(config: PriorConfig) -> PriorTransformer:
  return nnx.eval_shape(lambda: PriorTransformer(config, rngs=nnx.Rngs(0)))


def prior_with_params(config: PriorConfig, params: Mapping) -> PriorTransformer:
  """`PriorTransformer(config)` holding `params` (pure nested dict), no random init."""
  abstract = abstract_prior(config)
  state = nnx.state(abstract)
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, dict(params)))
  return nnx.merge(nnx.graphdef(abstract), state)


def read_diffusers_prior(
  src: str | Path, *, variant: str | None = None, allow_unused: Iterable[str] = ()
) -> tuple[PriorConfig, dict, dict]:
  """A diffusers prior folder -> (PriorConfig, pure params, config.json as a dict)."""
  hf = read_model_config(
    src,
    expected="a diffusers PriorTransformer folder with config.json and weights",
    instead="for an unCLIP pipeline, pass its prior/ subfolder",
  )
  config = prior_config_from_diffusers(hf)
  weights = read_weights(find_weights_file(src, variant=variant))
  params = convert_prior_state_dict(weights, abstract_prior(config), allow_unused=allow_unused)
  return config, params, hf


def save_converted_prior(
  out_dir: str | Path,
  params: Mapping,
  config: PriorConfig,
  *,
  source: Mapping[str, Any],
  overwrite: bool = False,
) -> Path:
  return write_converted(
    out_dir,
    params,
    CONFIG_FILE,
    {"prior": dataclasses.asdict(config), "source": dict(source)},
    overwrite=overwrite,
  )


def convert_diffusers_prior(
  src: str | Path,
  out: str | Path,
  *,
  variant: str | None = None,
  allow_unused: Iterable[str] = (),
  overwrite: bool = False,
) -> Path:
  """`python -m videofusion_jax.convert diffusers-prior`: read SRC, write OUT."""
  config, params, hf = read_diffusers_prior(src, variant=variant, allow_unused=allow_unused)
  source = {
    "path": str(Path(src).absolute()),
    "class_name": hf.get("_class_name"),
    "diffusers_version": hf.get("_diffusers_version"),
  }
  return save_converted_prior(out, params, config, source=source, overwrite=overwrite)


def is_converted_prior(path: str | Path) -> bool:
  return (storage.path(path) / CONFIG_FILE).is_file()


def load_converted_prior(path: str | Path) -> PriorTransformer:
  """The prior in a folder written by `convert diffusers-prior`, ready to call."""
  path = storage.absolute(path)
  saved = read_converted_config(
    path, CONFIG_FILE, "prior", f"diffusers-prior --src=PRIOR_DIR --out={path}"
  )
  config = PriorConfig(**saved["prior"]).validate()
  params = restore_params(
    path, nnx.to_pure_dict(nnx.state(abstract_prior(config))), "prior", CONFIG_FILE
  )
  return prior_with_params(config, params)
