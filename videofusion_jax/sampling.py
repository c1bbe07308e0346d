"""Generate videos with a VideoFusion model: one jitted sampler per shape.

The sampler is a pure function of `(state, base_key, residual_key)` closed over the
model's graphdef, the schedule and static settings, so it compiles once per shape and
runs the whole DDIM/DDPM loop as one `lax.scan`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models.videofusion import VideoFusion

SAMPLERS = ("ddim", "ddpm")
DDPM_VARIANCES = ("fixed_small", "learned_range")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Static sampler settings (the `sample` section of an experiment config)."""
  sampler: str = "ddim"
  num_steps: int = 50
  eta: float = 0.0
  clip_x0: bool = True
  ddpm_variance: str = "fixed_small"
  noise_mode: str = "decomposed"

  def validate(self, learned_variance: bool) -> None:
    if self.sampler not in SAMPLERS:
      raise ValueError(f"sample.sampler={self.sampler!r}; expected one of {SAMPLERS}")
    if self.ddpm_variance not in DDPM_VARIANCES:
      raise ValueError(f"sample.ddpm_variance={self.ddpm_variance!r}; expected one of "
                       f"{DDPM_VARIANCES}")
    if self.ddpm_variance == "learned_range" and not learned_variance:
      raise ValueError("sample.ddpm_variance='learned_range' needs a model with "
                       "model.learned_variance=True")
    if self.eta < 0:
      raise ValueError(f"sample.eta={self.eta}; expected eta >= 0")


def model_eps_fn(model: VideoFusion, schedule: diffusion.Schedule, *, with_variance: bool,
                 cond=None) -> Callable:
  """Adapt the model to the samplers' `eps_fn(z, t)` interface."""
  def eps_fn(z, t):
    out = model(z, t, schedule.alphas_cumprod, cond=cond)
    return (out.eps, out.var_values) if with_variance else out.eps
  return eps_fn


def make_sample_fn(graphdef: nnx.GraphDef, shape: tuple[int, ...], lam: float,
                   config: SamplerConfig) -> Callable:
  """-> jitted `sample_fn(state, schedule, base_key, residual_key) -> (B, N, H, W, C)`."""
  with_variance = config.sampler == "ddpm" and config.ddpm_variance == "learned_range"

  @jax.jit
  def sample_fn(state, schedule, base_key, residual_key):
    model = nnx.merge(graphdef, state)
    eps_fn = model_eps_fn(model, schedule, with_variance=with_variance)
    if config.sampler == "ddim":
      return diffusion.ddim_sample(
          eps_fn, schedule, shape, base_key, residual_key, lam=lam,
          num_steps=config.num_steps, eta=config.eta, clip_x0=config.clip_x0,
          noise_mode=config.noise_mode)
    return diffusion.ddpm_sample(
        eps_fn, schedule, shape, base_key, residual_key, lam=lam,
        variance=config.ddpm_variance, clip_x0=config.clip_x0, noise_mode=config.noise_mode)

  return sample_fn


def sample_videos(model: VideoFusion, schedule: diffusion.Schedule, *, num_videos: int,
                  batch_size: int, num_frames: int, image_size: int, config: SamplerConfig,
                  base_seed: int, residual_seed: int, progress: Callable | None = None):
  """Yield batches of videos (B, N, H, W, C) in [-1, 1], `num_videos` in all.

  Batch j draws its noise from `fold_in(PRNGKey(base_seed), j)` and
  `fold_in(PRNGKey(residual_seed), j)`: the same base seed gives the same base noise,
  hence the same content, whatever the residual seed.
  """
  vf = model.config
  config.validate(vf.learned_variance)
  if num_videos < 1 or batch_size < 1:
    raise ValueError(f"num_videos={num_videos}, batch_size={batch_size}; expected >= 1")
  shape = (min(batch_size, num_videos), num_frames, image_size, image_size, vf.channels)
  vf.check_video(shape, name="sampled video")
  diffusion.frame_lambdas(num_frames, vf.lam)  # validates lam and num_frames early
  graphdef, state = nnx.split(model)
  sample_fn = make_sample_fn(graphdef, shape, vf.lam, config)
  base, residual = jax.random.key(base_seed), jax.random.key(residual_seed)
  done, batch = 0, 0
  while done < num_videos:
    videos = sample_fn(state, schedule, jax.random.fold_in(base, batch),
                       jax.random.fold_in(residual, batch))
    take = min(shape[0], num_videos - done)
    done, batch = done + take, batch + 1
    if progress is not None:
      progress(done, num_videos)
    yield jax.device_get(videos[:take])
