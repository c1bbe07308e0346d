"""Turn an ml_collections experiment config into model configs (and back)."""

from __future__ import annotations

import dataclasses

import ml_collections

from videofusion_jax.models.presets import unet_config_from_dict
from videofusion_jax.models.unet import UNetConfig
from videofusion_jax.models.videofusion import VideoFusionConfig

# Set by VideoFusionConfig from the data channels and the decomposition, never by hand.
DERIVED_UNET_FIELDS = ("in_channels", "out_channels", "frame_conditioned")
# `config.model` fields that change how the model runs, not its weights: a checkpoint
# loads whatever they are set to.
EXECUTION_FIELDS = ("dtype", "param_dtype", "remat", "remat_policy", "residual_chunks")


def unet_fields(unet: UNetConfig) -> dict:
  """The configurable fields of a U-Net, as a plain dict for a ConfigDict."""
  fields = dataclasses.asdict(unet)
  for name in DERIVED_UNET_FIELDS:
    fields.pop(name)
  return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def videofusion_config(config: ml_collections.ConfigDict) -> VideoFusionConfig:
  """`config.model`, `config.diffusion` and `config.data` -> a validated VideoFusionConfig."""
  model = config.model
  for part in ("base", "residual"):
    bad = sorted(set(model[part]) & set(DERIVED_UNET_FIELDS))
    if bad:
      raise ValueError(f"model.{part}.{bad[0]} is derived from data.channels and the "
                       "decomposition settings; remove it from the config")
  vf = VideoFusionConfig(
      base=unet_config_from_dict(model.base.to_dict(), "model.base"),
      residual=unet_config_from_dict(model.residual.to_dict(), "model.residual"),
      channels=config.data.channels, lam=config.diffusion.lam,
      objective=config.diffusion.objective, residual_context=model.residual_context,
      learned_variance=model.learned_variance,
      **{k: model[k] for k in EXECUTION_FIELDS if k in model})
  vf.validate()
  return vf
