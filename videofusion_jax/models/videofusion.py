"""VideoFusion: a base generator on the centre frame and a residual generator on the rest.

The module only wires the two U-Nets into `diffusion.decomposed_denoise`, which holds
all of the decomposition math (Eq. 12-13): one base call on the centre frame and one
residual call over the other N-1 frames, folded into the batch, per denoising step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models.conditioning import Condition, ConditionConfig
from videofusion_jax.models.execution import MixedPrecision, check_execution_knobs, remat_policy
from videofusion_jax.models.unet import UNet, UNetConfig

RESIDUAL_CONTEXTS = ("centre_estimate", "centre_x0", "centre_frame", "none")
OBJECTIVES = ("eps", "v")


@dataclasses.dataclass(frozen=True)
class VideoFusionConfig:
  """The two generators and the decomposition they implement.

  The U-Nets' `in_channels`/`out_channels` and the residual's `frame_conditioned` are
  derived here from `channels`, `residual_context` and `learned_variance`, so the two
  networks always agree with the decomposition.
  """

  base: UNetConfig = UNetConfig()
  residual: UNetConfig = UNetConfig(block_out_channels=(128, 256, 384, 640), temporal="attention")
  channels: int = 3
  lam: float = 0.5  # share of the base noise in non-centre frames
  objective: str = "eps"  # what each network predicts: eps, or v of its part
  residual_context: str = "centre_estimate"  # what ties residual frames to the content
  # ("centre_frame": the clean centre frame itself,
  # sampled by the base first; two-pass sampling)
  learned_variance: bool = False  # networks also predict the DDPM variance
  cond: ConditionConfig = ConditionConfig()  # class / CLIP image embedding conditioning
  # Execution knobs: speed and memory only, the parameters are the same.
  dtype: str = "float32"  # compute dtype ("bfloat16": params cast per call)
  param_dtype: str = "float32"  # stored parameters (EMA and optimizer follow)
  remat: bool = False  # rematerialise every U-Net block in the backward
  remat_policy: str = "nothing_saveable"  # which activations remat may keep
  residual_chunks: int = 1  # residual generator in sequential batch chunks
  attention: str = "xla"  # "cudnn": fused flash attention on a CUDA GPU

  @property
  def needs_centre_frame(self) -> bool:
    """The residual generator is conditioned on the clean centre frame: training gives
    it the data's, sampling the base generator's finished sample (`sampling/generate.py`)."""
    return self.residual_context == "centre_frame"

  def validate(self) -> None:
    if not 0.0 <= self.lam <= 1.0:
      raise ValueError(f"model.lam={self.lam}; expected 0 <= lam <= 1")
    if self.objective not in OBJECTIVES:
      raise ValueError(f"model.objective={self.objective!r}; expected one of {OBJECTIVES}")
    if self.residual_context not in RESIDUAL_CONTEXTS:
      raise ValueError(
        f"model.residual_context={self.residual_context!r}; expected one of {RESIDUAL_CONTEXTS}"
      )
    if self.channels < 1:
      raise ValueError(f"model.channels={self.channels}; expected >= 1")
    check_execution_knobs(self)
    if self.residual_chunks < 1:
      raise ValueError(f"model.residual_chunks={self.residual_chunks}; expected >= 1")
    self.cond.validate()
    for part in ("base", "residual"):
      unet = getattr(self, part)
      if self.cond.enabled and (unet.class_embed_type or unet.cross_attention_dim):
        raise ValueError(
          f"model.{part} sets class_embed_type/cross_attention_dim, and "
          f"cond.kind={self.cond.kind!r} sets them too; unset them in "
          f"model.{part}"
        )
    if self.cond.kind == "unclip" and self.cond.time_embed_dim != self.base.time_embed_dim:
      raise ValueError(
        f"cond.time_embed_dim={self.cond.time_embed_dim}; cond.kind='unclip' "
        "adds its vector to the base U-Net's time embedding, of width "
        f"4 * model.base.block_out_channels[0] = {self.base.time_embed_dim}"
      )
    self.base_unet().validate("model.base")
    self.residual_unet().validate("model.residual")

  def base_unet(self) -> UNetConfig:
    out = self.channels * (2 if self.learned_variance else 1)
    return dataclasses.replace(
      self.base, in_channels=self.channels, out_channels=out, **self._condition_fields("base")
    )

  def residual_unet(self) -> UNetConfig:
    cin = self.channels * (2 if self.residual_context != "none" else 1)
    out = self.channels * (2 if self.learned_variance else 1)
    return dataclasses.replace(
      self.residual,
      in_channels=cin,
      out_channels=out,
      frame_conditioned=True,
      **self._condition_fields("residual"),
    )

  def _condition_fields(self, part: str) -> dict:
    """How both U-Nets take the condition: the vector through a projected class
    embedding, the tokens as attention keys/values. With cond.kind "unclip" the vector
    already has the base's time-embedding width (added as is, an unCLIP decoder's
    "identity" class embedding); the residual projects it to its own width."""
    if not self.cond.enabled:
      return {}
    if self.cond.kind == "unclip" and part == "base":
      return dict(class_embed_type="identity", cross_attention_dim=self.cond.token_dim)
    width = self.cond.time_embed_dim if self.cond.kind == "unclip" else self.cond.embed_dim
    return dict(
      class_embed_type="projection",
      class_embed_input_dim=width,
      cross_attention_dim=self.cond.token_dim,
    )

  def check_video(self, shape, name: str = "z_t") -> None:
    """Shape check for a video `(B, N, H, W, C)` before any compile."""
    if len(shape) != 5:
      raise ValueError(f"{name} has shape {tuple(shape)}; expected (B, N, H, W, C)")
    b, n, h, w, c = shape
    if n < 2:
      raise ValueError(f"{name} has {n} frame(s); VideoFusion needs num_frames >= 2")
    if c != self.channels:
      raise ValueError(f"{name} has {c} channels; model.channels={self.channels}")
    self.base_unet().check_input((b, h, w, c), name=f"{name} frames")


def needs_centre_frame(model) -> bool:
  """Whether `model` (a VideoFusion, VDM*, or a test's stand-in) takes the clean centre
  frame as an input: `residual_context = "centre_frame"`."""
  return bool(getattr(getattr(model, "config", None), "needs_centre_frame", False))


def _per_frame(tree: Mapping[str, Any] | None, frames: int) -> dict:
  """Repeat each batch entry of a condition once per frame (frames folded into B)."""
  return {k: jnp.repeat(v, frames, axis=0) for k, v in (tree or {}).items()}


class VideoFusion(MixedPrecision, nnx.Module):
  """Decomposed video denoiser: `base` (image U-Net) + `residual` (frame U-Net)."""

  def __init__(self, config: VideoFusionConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    policy = remat_policy(config)
    self.condition = Condition(config.cond, rngs=rngs) if config.cond.enabled else None
    self.base = UNet(config.base_unet(), remat_policy=policy, attention=config.attention, rngs=rngs)
    self.residual = UNet(
      config.residual_unet(), remat_policy=policy, attention=config.attention, rngs=rngs
    )
    self.store_params_in_param_dtype()

  def __call__(
    self,
    z_t: jax.Array,
    t: jax.Array,
    alphas_cumprod: jax.Array,
    *,
    cond: Mapping[str, jax.Array] | None = None,
    stop_base_grad: bool = True,
    rngs: nnx.Rngs | None = None,
    centre_frame: jax.Array | None = None,
    residual: bool = True,
  ) -> diffusion.DenoiseOutput:
    """Predict the noise of `z_t` (B, N, H, W, C) at timesteps `t` (B,).

    `cond` has batch axis B. With `config.cond` enabled it holds the condition inputs
    (`class_id` or `image_embed`, optional `text_hidden`, and `drop`, clips that take
    the learned null condition, for classifier-free guidance); otherwise it may hold
    raw U-Net inputs (`class_labels`, `context`). `alphas_cumprod` is the schedule's
    (T,) array.

    `centre_frame` (B, H, W, C): the clean centre frame, for `residual_context =
    "centre_frame"` (the data's in training, the base's finished sample in sampling).
    `residual=False` skips the residual generator (its frames' eps are then b_hat's
    share only): the first of the two sampling passes, which needs the centre alone.
    """
    cfg = self.config
    cfg.check_video(z_t.shape)  # static shapes: fails at trace time, before compiling
    base_fn, residual_fn = self.generators(
      z_t.shape,
      t,
      alphas_cumprod,
      cond=cond,
      rngs=rngs,
      centre_frame=centre_frame,
      residual=residual,
    )
    return diffusion.decomposed_denoise(
      z_t,
      alphas_cumprod[t],
      cfg.lam,
      base_fn,
      residual_fn,
      objective=cfg.objective,
      stop_base_grad=stop_base_grad,
      learned_variance=cfg.learned_variance,
    )

  def generators(
    self,
    shape: tuple[int, ...],
    t: jax.Array,
    alphas_cumprod: jax.Array,
    *,
    cond: Mapping[str, jax.Array] | None = None,
    rngs: nnx.Rngs | None = None,
    centre_frame: jax.Array | None = None,
    residual: bool = True,
  ) -> tuple[Callable, Callable]:
    """`(base_fn, residual_fn)` for `diffusion.decomposed_denoise` on videos of `shape`:
    `base_fn(z_centre)` and `residual_fn(z_others, centre_estimate)`. Apart from
    `__call__` so a diagnostic can change what one generator sees
    (`tools/context_reliance.py` hands the residual another clip's centre)."""
    cfg = self.config
    b, n, h, w, c = shape
    if self.condition is not None:
      if cond is None:
        raise ValueError(
          f"the model is conditioned (cond.kind={cfg.cond.kind!r}); pass "
          f"cond with {list(cfg.cond.input_names())}"
        )
      cond = self.condition(cond)
    others = np.asarray(diffusion.other_frame_indices(n))
    m = len(others)
    if residual and cfg.needs_centre_frame:
      if centre_frame is None:
        raise ValueError(
          "model.residual_context='centre_frame': pass centre_frame, the "
          "clean centre frame (the data's in training; sampling/generate.py samples "
          "it with the base generator first)"
        )
      if centre_frame.shape != (b, h, w, c):
        raise ValueError(f"centre_frame has shape {centre_frame.shape}; expected {(b, h, w, c)}")

    def base_fn(z_centre):
      with jax.named_scope("base_unet"):  # op names say which generator (op_profile)
        return self.base(z_centre, t, **(cond or {}), rngs=rngs)

    def residual_fn(z_others, centre_estimate):
      if not residual:
        return jnp.zeros((*z_others.shape[:-1], self.residual.config.out_channels), z_others.dtype)
      x = z_others
      if cfg.needs_centre_frame:
        centre_estimate = centre_frame.astype(z_others.dtype)
      if cfg.residual_context == "centre_x0":
        # x0_hat[c] itself, in [-1, 1] at every noise level: sqrt(ab) x0_hat fades to
        # ~0 at high noise, where the frames' content is decided (docs/history.md "Demo quality").
        a = jnp.sqrt(alphas_cumprod[t]).astype(centre_estimate.dtype)[:, None, None, None]
        centre_estimate = jnp.clip(centre_estimate / a, -1.0, 1.0)
      if cfg.residual_context != "none":
        context = jnp.broadcast_to(centre_estimate[:, None], z_others.shape)
        x = jnp.concatenate([z_others, context], axis=-1)
      with jax.named_scope("residual_unet"):
        out = self._residual_in_chunks(
          x.reshape(b * m, h, w, x.shape[-1]),
          jnp.repeat(t, m),
          jnp.tile(jnp.asarray(others, jnp.int32), b),
          _per_frame(cond, m),
          m,
          rngs,
        )
      return out.reshape(b, m, h, w, out.shape[-1])

    return base_fn, residual_fn

  def _residual_in_chunks(self, x, t, frame_index, cond, num_frames, rngs):
    """The residual U-Net over (B*m, ...) inputs, in `residual_chunks` sequential parts.

    Chunks hold whole clips, so temporal layers see all m frames of a clip; a
    `lax.map` runs them one after another, so only one chunk's activations are live
    (in training, together with `remat`, whose blocks keep only their inputs).
    """
    chunks = self.config.residual_chunks
    if chunks == 1:
      return self.residual(x, t, frame_index=frame_index, num_frames=num_frames, **cond, rngs=rngs)
    clips = x.shape[0] // num_frames
    if clips % chunks:
      raise ValueError(
        f"model.residual_chunks={chunks} does not divide the {clips} clips of the batch"
      )
    graphdef, state = nnx.split(self.residual)
    keys = None if rngs is None else jax.random.split(rngs.dropout(), chunks)
    split = lambda a: a.reshape(chunks, a.shape[0] // chunks, *a.shape[1:])

    def one(args):
      x, t, frame_index, cond, key = args
      return nnx.merge(graphdef, state)(
        x,
        t,
        frame_index=frame_index,
        num_frames=num_frames,
        **cond,
        rngs=None if key is None else nnx.Rngs(dropout=key),
      )

    out = jax.lax.map(
      one, (split(x), split(t), split(frame_index), jax.tree.map(split, cond), keys)
    )
    return out.reshape(x.shape[0], *out.shape[2:])
