"""Turn an ml_collections experiment config into model configs (and back)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
from flax import nnx

from videofusion_jax.models.conditioning import ConditionConfig, condition_config
from videofusion_jax.models.execution import VIDEOFUSION_EXECUTION_FIELDS
from videofusion_jax.models.presets import unet_config_from_dict
from videofusion_jax.models.superres import SuperRes, superres_config
from videofusion_jax.models.tracing import quiet_tracer_errors
from videofusion_jax.models.unet import UNetConfig
from videofusion_jax.models.vdm import VDM, vdm_config
from videofusion_jax.models.videofusion import VideoFusion, VideoFusionConfig

# Set by VideoFusionConfig from the data channels and the decomposition, never by hand.
DERIVED_UNET_FIELDS = ("in_channels", "out_channels", "frame_conditioned")


def unet_fields(unet: UNetConfig) -> dict:
  """The configurable fields of a U-Net, as a plain dict for a ConfigDict."""
  fields = dataclasses.asdict(unet)
  for name in DERIVED_UNET_FIELDS:
    fields.pop(name)
  return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def videofusion_config(config: ml_collections.ConfigDict) -> VideoFusionConfig:
  """`config.model`, `config.diffusion` and `config.data` -> a validated VideoFusionConfig."""
  model = config.model
  lam = config.diffusion.lam  # VideoFusionConfig would call it model.lam: name the field set
  if not 0.0 <= lam <= 1.0:
    raise ValueError(f"diffusion.lam={lam}; expected 0 <= lam <= 1")
  for part in ("base", "residual"):
    bad = sorted(set(model[part]) & set(DERIVED_UNET_FIELDS))
    if bad:
      raise ValueError(
        f"model.{part}.{bad[0]} is derived from data.channels and the "
        "decomposition settings; remove it from the config"
      )
  vf = VideoFusionConfig(
    base=unet_config_from_dict(model.base.to_dict(), "model.base"),
    residual=unet_config_from_dict(model.residual.to_dict(), "model.residual"),
    channels=config.data.channels,
    lam=config.diffusion.lam,
    objective=config.diffusion.objective,
    residual_context=model.residual_context,
    learned_variance=model.learned_variance,
    cond=condition_config(config),
    **{k: model[k] for k in VIDEOFUSION_EXECUTION_FIELDS if k in model},
  )
  vf.validate()
  return vf


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Which network an experiment trains and samples, and its validated settings.

  `cls(config, rngs=...)` builds the NNX module. Every kind's module is called as
  `model(z_t, t, alphas_cumprod, *, cond=None, stop_base_grad=True, rngs=None)` and
  returns a `diffusion.DenoiseOutput`, and has `in_compute_dtype()`; its config has
  `channels`, `lam`, `learned_variance`, `validate()` and `check_video(shape, name)`.
  The train step and the samplers need nothing else.
  """

  config: Any
  cls: type

  def build(self, seed: int) -> nnx.Module:
    with quiet_tracer_errors():  # under eval_shape or a jitted init: models/tracing.py
      return self.cls(self.config, rngs=nnx.Rngs(seed))


def _videofusion_spec(config: ml_collections.ConfigDict) -> ModelSpec:
  return ModelSpec(videofusion_config(config), VideoFusion)


# `config.model.kind` -> the function that turns the experiment config into a ModelSpec.
MODEL_KINDS: dict[str, Callable[[ml_collections.ConfigDict], ModelSpec]] = {
  "videofusion": _videofusion_spec,
  "superres": lambda config: ModelSpec(superres_config(config), SuperRes),
  "vdm": lambda config: ModelSpec(vdm_config(config), VDM),
}


def condition_of(model_config) -> ConditionConfig:
  """The conditioning a model config declares (none for kinds without `cond`)."""
  return getattr(model_config, "cond", None) or ConditionConfig()


def model_spec(config: ml_collections.ConfigDict) -> ModelSpec:
  """The ModelSpec named by `config.model.kind` (default "videofusion")."""
  kind = config.model.kind
  if kind not in MODEL_KINDS:
    raise ValueError(f"model.kind={kind!r}; expected one of {sorted(MODEL_KINDS)}")
  return MODEL_KINDS[kind](config)
