"""Video super-resolution: a diffusion U-Net conditioned on the low-resolution frames.

The second stage of the cascade (paper Sec 4: 16x64x64 clips super-resolved to 128x128
with an SR3/Imagen-style model). Each high-resolution frame is denoised by the 2D U-Net
of `unet.py` with the frames folded into the batch; its input is the noisy frame
concatenated with the low-resolution frame resized up (bilinear or bicubic). Optional
temporal layers (`unet.temporal`) mix the frames; by default the network is per frame
and the frames are tied only by the noise: the train step and the sampler draw it with
the decomposed rule of `diffusion.noise_sharing` (`diffusion.noise_mode`, `lam`; the
model itself holds no noise math beyond `diffusion.standard_denoise`).

Noise-conditioning augmentation (Imagen, Saharia et al. 2022): the low-resolution frames
are corrupted by the forward process at a level `s` in [0, 1], `sqrt(ab(s)) low +
sqrt(1 - ab(s)) noise`, where `ab(s)` is the schedule's alpha_bar after `s * T` steps of
the forward process (linearly interpolated; ab(0) = 1: no corruption), and `s * T` enters
the U-Net as a second timestep embedding through its class-embedding input ("projection"
of a sinusoidal embedding, diffusers' `class_embed_type="timestep"`). Training draws
`s ~ U(0, aug_max_level)` per clip, so the model learns to rely less on a noisier
condition; sampling uses the fixed `sample_aug_level`, which makes the SR stage robust to
the base model's artefacts.

`aug_embedding=False` drops the level embedding (the U-Net has no class embedding), as
in Karlo's `super_res_first`/`super_res_last` (diffusers `UNet2DModel`s on the noisy
frame + the bicubically upsampled 64x64 image, no augmentation): with `residual_input`
False and `upsample="bicubic"` (which equals torch's `F.interpolate(mode="bicubic",
antialias=True)` used by the pipeline) converted weights run unchanged; the levels must
then be 0, since the network could not be told them.

Conditioning and guidance (`cond`, models/conditioning.py): as Imagen's text-conditioned
SR stages, the SR model can take the base model's condition too: a class id or a CLIP
image embedding (with optional text tokens), through the same `Condition` module as
VideoFusion. Its vector joins the augmentation-level embedding in the U-Net's one class
embedding input (the two are concatenated before the projection), its tokens are the
attention layers' context; `drop` (B,) gives clips the learned null, so training with
`train.cond_drop_prob` makes the same network unconditional too and the sampler guides
the SR stage with `sample.guidance_scale` (one doubled-batch call per step, the low-res
frames the same in both halves). Kind "unclip" is not offered: Karlo's SR U-Nets take
no condition.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models.conditioning import Condition, ConditionConfig, condition_config
from videofusion_jax.models.execution import (
  EXECUTION_FIELDS,
  MixedPrecision,
  check_execution_knobs,
  remat_policy,
)
from videofusion_jax.models.layers import timestep_embedding
from videofusion_jax.models.presets import unet_config_from_dict
from videofusion_jax.models.unet import UNet, UNetConfig

UPSAMPLE_METHODS = ("bilinear", "bicubic")
COND_KEYS = ("low_res", "aug_level", "aug_noise")
# Set from the data channels and the augmentation embedding, never by hand.
DERIVED_UNET_FIELDS = (
  "in_channels",
  "out_channels",
  "frame_conditioned",
  "class_embed_type",
  "num_class_embeds",
  "class_embed_input_dim",
  "cross_attention_dim",
)


@dataclasses.dataclass(frozen=True)
class SuperResConfig:
  """The SR network and what it conditions on. The U-Net's in/out channels and class
  embedding are derived here, so the network always agrees with the conditioning."""

  unet: UNetConfig = UNetConfig(block_out_channels=(128, 256, 384, 512), attention_levels=(3,))
  channels: int = 3
  image_size: int = 128  # high-resolution H = W
  low_res_size: int = 64  # conditioning frames' H = W
  lam: float = 0.5  # the sampler's / train step's base-noise share
  objective: str = "eps"  # "eps" or "v" of z_t = sqrt(ab) x + sqrt(1-ab) eps
  learned_variance: bool = False
  upsample: str = "bilinear"  # how the low-res frames are resized up
  aug_max_level: float = 0.5  # training: augmentation level ~ U(0, aug_max_level)
  sample_aug_level: float = 0.1  # sampling: the fixed level (cond["aug_level"] wins)
  residual_input: bool = True  # the network denoises x - up(low) (same noise)
  aug_embedding: bool = True  # the augmentation level enters as a class embedding
  cond: ConditionConfig = ConditionConfig()  # class / CLIP image embedding (guidance)
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False
  remat_policy: str = "nothing_saveable"
  attention: str = "xla"  # "cudnn": fused flash attention on a CUDA GPU

  def validate(self) -> None:
    diffusion.decomposition.check_lam(self.lam)
    if self.objective not in diffusion.OBJECTIVES:
      raise ValueError(
        f"diffusion.objective={self.objective!r}; expected one of {diffusion.OBJECTIVES}"
      )
    if self.channels < 1:
      raise ValueError(f"data.channels={self.channels}; expected >= 1")
    if self.upsample not in UPSAMPLE_METHODS:
      raise ValueError(f"model.upsample={self.upsample!r}; expected one of {UPSAMPLE_METHODS}")
    if not 0 < self.low_res_size < self.image_size:
      raise ValueError(
        f"data.low_res_size={self.low_res_size}; expected 0 < low_res_size "
        f"< data.image_size={self.image_size}"
      )
    for name in ("aug_max_level", "sample_aug_level"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name}={getattr(self, name)}; expected a level in [0, 1]")
      if not self.aug_embedding and getattr(self, name) != 0.0:
        raise ValueError(
          f"{name}={getattr(self, name)} with model.aug_embedding=False: the "
          "network is not told the augmentation level; set it to 0"
        )
    check_execution_knobs(self)
    self.cond.validate()
    if self.cond.kind == "unclip":
      raise ValueError(
        "cond.kind='unclip' is not offered for the SR model (Karlo's "
        "super-resolution U-Nets take no condition); use cond.kind 'class' "
        "or 'image_embed', or 'none'"
      )
    self.unet_config().validate("model.unet")

  @property
  def class_input_dim(self) -> int:
    """Width of the U-Net's class-embedding input: the augmentation-level embedding and
    the condition vector, concatenated (0: no class embedding)."""
    return (self.unet.block_out_channels[0] if self.aug_embedding else 0) + (
      self.cond.embed_dim if self.cond.enabled else 0
    )

  def cond_keys(self) -> tuple[str, ...]:
    """Every entry `cond` may hold."""
    if not self.cond.enabled:
      return COND_KEYS
    return COND_KEYS + self.cond.input_names() + ("drop",)

  def unet_config(self) -> UNetConfig:
    width = self.class_input_dim
    return dataclasses.replace(
      self.unet,
      in_channels=2 * self.channels,
      out_channels=self.channels * (2 if self.learned_variance else 1),
      frame_conditioned=False,
      class_embed_type="projection" if width else None,
      class_embed_input_dim=width or None,
      num_class_embeds=None,
      cross_attention_dim=self.cond.token_dim,
    )

  def check_video(self, shape, name: str = "z_t") -> None:
    """Shape check for a high-resolution video `(B, N, H, W, C)` before any compile."""
    if len(shape) != 5:
      raise ValueError(f"{name} has shape {tuple(shape)}; expected (B, N, H, W, C)")
    b, n, h, w, c = shape
    if c != self.channels:
      raise ValueError(f"{name} has {c} channels; data.channels={self.channels}")
    if (h, w) != (self.image_size, self.image_size):
      raise ValueError(
        f"{name} has frames of {h}x{w}; the SR model makes "
        f"data.image_size={self.image_size} square frames"
      )
    self.unet_config().check_input((b * n, h, w, 2 * c), name=f"{name} frames")

  def check_cond(self, cond: Mapping[str, Any] | None, video_shape) -> None:
    """`cond` must hold `low_res` (B, N, h, w, C); `aug_level` (B,), `aug_noise` like
    `low_res` are optional. A conditioned model (`self.cond`) also reads the condition's
    inputs (class_id, image_embed, ...) and the optional `drop`."""
    if not cond or "low_res" not in cond:
      raise ValueError(
        "the super-resolution model needs cond={'low_res': (B, N, h, w, C)}"
        f", got keys {sorted(cond or {})}"
      )
    unknown = sorted(set(cond) - set(self.cond_keys()))
    if unknown:
      raise ValueError(
        f"cond has unknown key(s) {unknown}; the SR model (cond.kind="
        f"{self.cond.kind!r}) takes {self.cond_keys()}"
      )
    b, n, _, _, c = video_shape
    want = (b, n, self.low_res_size, self.low_res_size, c)
    if tuple(cond["low_res"].shape) != want:
      raise ValueError(
        f"cond['low_res'] has shape {tuple(cond['low_res'].shape)}; expected "
        f"{want} (data.low_res_size={self.low_res_size})"
      )
    if "aug_noise" in cond and tuple(cond["aug_noise"].shape) != want:
      raise ValueError(
        f"cond['aug_noise'] has shape {tuple(cond['aug_noise'].shape)}; expected {want}"
      )
    if "aug_level" in cond and tuple(jnp.shape(cond["aug_level"])) != (b,):
      raise ValueError(
        f"cond['aug_level'] has shape {tuple(jnp.shape(cond['aug_level']))}; "
        f"expected ({b},), one level per clip"
      )


def augment_low_res(low, level, noise, alphas_cumprod) -> jax.Array:
  """Imagen's noise-conditioning augmentation: the forward process at `level * T`.

  low, noise (B, N, h, w, C); level (B,) in [0, 1]; alphas_cumprod (T,). alpha_bar is
  linearly interpolated between timesteps, with alpha_bar = 1 at level 0.
  """
  ab = aug_alpha_bar(level, alphas_cumprod)[:, None, None, None, None]
  return jnp.sqrt(ab) * low + jnp.sqrt(1.0 - ab) * noise


def aug_alpha_bar(level, alphas_cumprod) -> jax.Array:
  """(B,) alpha_bar after `level * T` forward steps: 1 at level 0, `alphas_cumprod[k - 1]`
  at level k / T, linear in between."""
  steps = alphas_cumprod.shape[0]
  table = jnp.concatenate([jnp.ones((1,), alphas_cumprod.dtype), alphas_cumprod])
  return jnp.interp(jnp.clip(level, 0.0, 1.0) * steps, jnp.arange(steps + 1.0), table)


def upsample_frames(frames, size: int, method: str) -> jax.Array:
  """(B, h, w, C) -> (B, size, size, C) with `jax.image.resize`."""
  b, _, _, c = frames.shape
  return jax.image.resize(frames, (b, size, size, c), method=method)


class SuperRes(MixedPrecision, nnx.Module):
  """Per-frame SR denoiser; `__call__` follows the model contract of `from_config`."""

  def __init__(self, config: SuperResConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    self.condition = Condition(config.cond, rngs=rngs) if config.cond.enabled else None
    self.unet = UNet(
      config.unet_config(), remat_policy=remat_policy(config), attention=config.attention, rngs=rngs
    )
    self.store_params_in_param_dtype()

  def augmented_condition(self, cond: Mapping[str, Any], alphas_cumprod, rngs: nnx.Rngs | None):
    """(augmented low-res frames (B, N, h, w, C), levels (B,)).

    With `rngs` (training) the level is drawn per clip from U(0, aug_max_level) and the
    noise from the dropout stream; without (sampling) the level is `sample_aug_level`
    and the noise `cond["aug_noise"]`, or a fixed draw (key 0) when it is absent.
    Levels and noise given in `cond` are always used as they are.
    """
    cfg = self.config
    low = cond["low_res"].astype(jnp.float32)
    batch = low.shape[0]
    level, noise = cond.get("aug_level"), cond.get("aug_noise")
    if rngs is not None and (level is None or noise is None):
      level_key, noise_key = jax.random.split(rngs.dropout())
      if level is None:
        level = jax.random.uniform(level_key, (batch,), maxval=cfg.aug_max_level)
      if noise is None:
        noise = jax.random.normal(noise_key, low.shape)
    if level is None:
      level = jnp.full((batch,), cfg.sample_aug_level, jnp.float32)
    if noise is None:
      noise = jax.random.normal(jax.random.key(0), low.shape)
    level = jnp.asarray(level, jnp.float32)
    return augment_low_res(low, level, noise.astype(jnp.float32), alphas_cumprod), level

  def __call__(
    self,
    z_t: jax.Array,
    t: jax.Array,
    alphas_cumprod: jax.Array,
    *,
    cond: Mapping[str, jax.Array] | None = None,
    stop_base_grad: bool = True,
    rngs: nnx.Rngs | None = None,
  ) -> diffusion.DenoiseOutput:
    """Predict the noise of the high-res `z_t` (B, N, H, W, C) at timesteps `t` (B,),
    given `cond["low_res"]` (B, N, h, w, C) in [-1, 1]. `stop_base_grad` has no
    meaning here (no base generator) and is accepted for the common interface."""
    del stop_base_grad
    cfg = self.config
    cfg.check_video(z_t.shape)  # static shapes: fails at trace time, before compiling
    cfg.check_cond(cond, z_t.shape)
    b, n, h, w, c = z_t.shape
    low, level = self.augmented_condition(cond, alphas_cumprod, rngs)
    up = upsample_frames(low.reshape(b * n, *low.shape[2:]), h, cfg.upsample)
    up = up.reshape(b, n, h, w, c).astype(z_t.dtype)
    unet_inputs = self.unet_condition(cond, level, n, alphas_cumprod.shape[0])
    temporal = cfg.unet.temporal != "none"
    ab_t = alphas_cumprod[t]
    if cfg.residual_input:
      # z_t - sqrt(ab) up = sqrt(ab) (x - up) + sqrt(1 - ab) eps: the same noise on the
      # residual x - up, which is small away from edges; eps (or v of this sub-problem,
      # converted by standard_denoise) is what the network predicts.
      z_t = z_t - jnp.sqrt(ab_t)[:, None, None, None, None] * up

    def model_fn(z):
      x = jnp.concatenate([z, up], axis=-1).reshape(b * n, h, w, 2 * c)
      out = self.unet(
        x, jnp.repeat(t, n), **unet_inputs, num_frames=n if temporal else None, rngs=rngs
      )
      return out.reshape(b, n, h, w, out.shape[-1])

    return diffusion.standard_denoise(
      z_t, ab_t, model_fn, objective=cfg.objective, learned_variance=cfg.learned_variance
    )

  def unet_condition(
    self, cond: Mapping[str, Any], level: jax.Array, frames: int, steps: int
  ) -> dict:
    """The U-Net's `class_labels` (and `context`) per frame (frames folded into B): the
    augmentation level's sinusoidal embedding and the condition vector, concatenated;
    the condition's tokens."""
    cfg = self.config
    vectors, out = [], {}
    if cfg.aug_embedding:
      vectors.append(
        timestep_embedding(
          level * steps,
          cfg.unet.block_out_channels[0],
          flip_sin_to_cos=cfg.unet.flip_sin_to_cos,
          freq_shift=cfg.unet.freq_shift,
        )
      )
    if self.condition is not None:
      inputs = self.condition(cond)
      vectors.append(inputs["class_labels"].astype(jnp.float32))
      if "context" in inputs:
        out["context"] = jnp.repeat(inputs["context"], frames, axis=0)
    if vectors:
      out["class_labels"] = jnp.repeat(jnp.concatenate(vectors, axis=-1), frames, axis=0)
    return out


def unet_fields(unet: UNetConfig) -> dict:
  """The configurable fields of the SR U-Net, as a plain dict for `config.model.unet`."""
  fields = {k: v for k, v in dataclasses.asdict(unet).items() if k not in DERIVED_UNET_FIELDS}
  return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def superres_config(config: ml_collections.ConfigDict) -> SuperResConfig:
  """An experiment config (`model.kind = "superres"`) -> a validated SuperResConfig.

  Reads `model.unet`, `model.upsample`, `model.aug_max_level`, `model.learned_variance`,
  the execution fields, `data.channels/image_size/low_res_size`, `diffusion.lam/
  objective`, `cond` (the condition, as for VideoFusion) and `sample.aug_level` (the
  sampling level): every SR config sets them (configs' `base.superres_model`, the
  cascade's converted stages).
  """
  model = config.model
  if "unet" not in model:
    raise ValueError("model.kind='superres' needs a model.unet section (configs/ucf101_sr.py)")
  bad = sorted(set(model.unet) & set(DERIVED_UNET_FIELDS))
  if bad:
    raise ValueError(
      f"model.unet.{bad[0]} is derived by the SR model (data.channels, the "
      "augmentation embedding); remove it from the config"
    )
  if config.train.sample_every:
    raise ValueError(
      f"train.sample_every={config.train.sample_every}; the SR model samples "
      "only with low-res inputs, so set it to 0 and sample through the "
      "cascade (python -m videofusion_jax.sample --superres_workdir=...)"
    )
  if not config.data.get("low_res_size", 0):
    raise ValueError(
      "model.kind='superres' needs data.low_res_size (the conditioning frames' size, e.g. 64)"
    )
  sr = SuperResConfig(
    unet=unet_config_from_dict(model.unet.to_dict(), "model.unet"),
    channels=config.data.channels,
    image_size=config.data.image_size,
    low_res_size=config.data.low_res_size,
    lam=config.diffusion.lam,
    objective=config.diffusion.objective,
    learned_variance=model.learned_variance,
    upsample=model.upsample,
    residual_input=model.residual_input,
    aug_embedding=model.get("aug_embedding", True),
    aug_max_level=model.aug_max_level,
    sample_aug_level=config.sample.aug_level,
    cond=condition_config(config),
    **{k: model[k] for k in EXECUTION_FIELDS if k in model},
  )
  sr.validate()
  return sr
