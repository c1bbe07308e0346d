"""VDM*: the video diffusion baseline of the paper's Table 4, on the base generator.

Ho et al. (2022) turn an image U-Net into a video U-Net by running its 2D layers on
every frame (frames folded into the batch) and adding, after each spatial attention, a
temporal attention over the frames at every pixel, with a learned relative-position
bias (`temporal.TemporalAttention`). All N frames are denoised by that one network
under independent per-frame noise (the "standard" process of `diffusion`). The paper
re-implemented it on VideoFusion's base generator (same blocks, same widths) to compare
memory and latency per denoising step (Table 4); so the U-Net settings here are the
base generator's (`config.model.base`), with temporal layers switched on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models.execution import (
  EXECUTION_FIELDS,
  MixedPrecision,
  check_execution_knobs,
  remat_policy,
)
from videofusion_jax.models.presets import unet_config_from_dict
from videofusion_jax.models.unet import UNet, UNetConfig

OBJECTIVES = ("eps", "v")
# "attention": temporal layers only where the U-Net has spatial attention (Ho et al.);
# "all": after every ResNet layer of every stage (the residual generator's placement).
TEMPORAL_PLACEMENTS = ("attention", "all")


@dataclasses.dataclass(frozen=True)
class VDMConfig:
  """One video U-Net over all frames; `unet` is the base generator's settings.

  `in_channels`/`out_channels` are derived from `channels` and `learned_variance`;
  `lam` is not used by the network (the standard process has no base noise) and is
  kept so that the samplers and the train step validate one field for every model.
  """

  unet: UNetConfig = UNetConfig(block_out_channels=(192, 384, 576, 960), temporal="attention")
  channels: int = 3
  lam: float = 0.5
  objective: str = "eps"
  learned_variance: bool = False
  temporal_placement: str = "attention"
  # Execution knobs: speed and memory only, the parameters are the same.
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False
  remat_policy: str = "nothing_saveable"
  attention: str = "xla"  # "cudnn": fused flash attention on a CUDA GPU

  def validate(self) -> None:
    if not 0.0 <= self.lam <= 1.0:
      raise ValueError(f"model.lam={self.lam}; expected 0 <= lam <= 1")
    if self.objective not in OBJECTIVES:
      raise ValueError(f"model.objective={self.objective!r}; expected one of {OBJECTIVES}")
    if self.channels < 1:
      raise ValueError(f"model.channels={self.channels}; expected >= 1")
    if self.unet.temporal == "none":
      raise ValueError(
        "model.base.temporal='none'; VDM* needs temporal layers (expected 'attention')"
      )
    if self.temporal_placement not in TEMPORAL_PLACEMENTS:
      raise ValueError(
        f"model.temporal_placement={self.temporal_placement!r}; expected one "
        f"of {TEMPORAL_PLACEMENTS}"
      )
    if self.temporal_placement == "attention" and not (
      self.unet.attention_levels or self.unet.mid_block_attention
    ):
      raise ValueError(
        "model.temporal_placement='attention' but model.base has no "
        "spatial attention, so VDM* would have no temporal layer"
      )
    check_execution_knobs(self)
    self.video_unet().validate("model.base")

  def video_unet(self) -> UNetConfig:
    out = self.channels * (2 if self.learned_variance else 1)
    return dataclasses.replace(
      self.unet, in_channels=self.channels, out_channels=out, frame_conditioned=False
    )

  def check_video(self, shape, name: str = "z_t") -> None:
    """Shape check for a video `(B, N, H, W, C)` before any compile."""
    if len(shape) != 5:
      raise ValueError(f"{name} has shape {tuple(shape)}; expected (B, N, H, W, C)")
    b, n, h, w, c = shape
    if n < 2:
      raise ValueError(f"{name} has {n} frame(s); VDM* needs num_frames >= 2")
    if c != self.channels:
      raise ValueError(f"{name} has {c} channels; model.channels={self.channels}")
    self.video_unet().check_input((b * n, h, w, c), name=f"{name} frames")


def vdm_config(config: ml_collections.ConfigDict) -> VDMConfig:
  """An experiment config with `model.kind = "vdm"` -> a validated VDMConfig.

  The U-Net is `model.base` (the base generator's blocks and widths, as the paper's
  VDM*); `model.residual` and `model.residual_context` are not used. The baseline is
  the standard process, so `diffusion.noise_mode` must be "standard".
  """
  model, d = config.model, config.diffusion
  if d.noise_mode != "standard":
    raise ValueError(
      f"diffusion.noise_mode={d.noise_mode!r} with model.kind='vdm'; the VDM* "
      "baseline is trained and sampled with 'standard' (independent) noise"
    )
  if model.residual_chunks != 1:
    raise ValueError(
      f"model.residual_chunks={model.residual_chunks}; VDM* has no residual generator (expected 1)"
    )
  if config.cond.kind != "none":
    raise ValueError(
      f"cond.kind={config.cond.kind!r}; VDM* is unconditional here (expected 'none')"
    )
  fields = model.base.to_dict()
  for name in ("in_channels", "out_channels", "frame_conditioned"):
    if name in fields:
      raise ValueError(f"model.base.{name} is derived from data.channels; remove it")
  vdm = VDMConfig(
    unet=unet_config_from_dict(fields, "model.base"),
    channels=config.data.channels,
    lam=d.lam,
    objective=d.objective,
    learned_variance=model.learned_variance,
    temporal_placement=model.temporal_placement,
    **{k: model[k] for k in EXECUTION_FIELDS if k in model},
  )
  vdm.validate()
  return vdm


def _keep_temporal_after_attention(unet: UNet) -> None:
  """Drop the temporal layers of stages without spatial attention (Ho et al.'s layout).

  The shared U-Net places them after every layer when `temporal` is on; a stage whose
  `attentions` is None then loses its `temp_mixers` and runs purely per frame.
  """
  for block in (*unet.down_blocks, unet.mid_block, *unet.up_blocks):
    if block.attentions is None:
      block.temp_mixers = None


class VDM(MixedPrecision, nnx.Module):
  """Video U-Net denoising all N frames at once: `(B, N, H, W, C)` in, eps of each out."""

  def __init__(self, config: VDMConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    self.unet = UNet(
      config.video_unet(), remat_policy=remat_policy(config), attention=config.attention, rngs=rngs
    )
    if config.temporal_placement == "attention":
      _keep_temporal_after_attention(self.unet)
    self.store_params_in_param_dtype()

  def __call__(
    self,
    z_t: jax.Array,
    t: jax.Array,
    alphas_cumprod: jax.Array,
    *,
    cond: Mapping[str, Any] | None = None,
    stop_base_grad: bool = True,
    rngs: nnx.Rngs | None = None,
  ) -> diffusion.DenoiseOutput:
    """Predict the noise of every frame of `z_t` (B, N, H, W, C) at timesteps `t` (B,).

    `cond` holds optional U-Net condition inputs (`class_labels`, `context`) with batch
    axis B, shared by the frames of a clip. `stop_base_grad` has no meaning without a
    base generator and is ignored. Returns `DenoiseOutput` with b_hat = r_hat = None.
    """
    del stop_base_grad
    cfg = self.config
    cfg.check_video(z_t.shape)  # static shapes: fails at trace time, before compiling
    b, n, h, w, c = z_t.shape
    per_frame = {k: jnp.repeat(v, n, axis=0) for k, v in (cond or {}).items()}

    def model_fn(z):
      out = self.unet(
        z.reshape(b * n, h, w, c), jnp.repeat(t, n), num_frames=n, **per_frame, rngs=rngs
      )
      return out.reshape(b, n, h, w, out.shape[-1])

    return diffusion.standard_denoise(
      z_t,
      alphas_cumprod[t],
      model_fn,
      objective=cfg.objective,
      learned_variance=cfg.learned_variance,
    )
