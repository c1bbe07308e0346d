"""Noise schedules: betas, cumulative alphas, posterior variances, DDIM timesteps.

Computed once in float64 numpy and stored as float32 arrays in a `Schedule` (a
NamedTuple, hence a pytree that jitted functions take as an argument). Timesteps are
0-based: t = 0 .. T-1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

SCHEDULE_NAMES = ("cosine", "linear")


class Schedule(NamedTuple):
  betas: jnp.ndarray  # (T,) beta_t
  alphas: jnp.ndarray  # (T,) alpha_t = 1 - beta_t
  alphas_cumprod: jnp.ndarray  # (T,) alpha_bar_t
  alphas_cumprod_prev: jnp.ndarray  # (T,) alpha_bar_{t-1}, with alpha_bar_{-1} = 1
  posterior_variance: jnp.ndarray  # (T,) "fixed small" DDPM variance
  posterior_log_variance_clipped: jnp.ndarray  # (T,) its log, entry 0 replaced by entry 1
  # Posterior mean = coef1 * x0 + coef2 * z_t, in float64 before the cast: 1 - ab_t has
  # few significant digits in float32 near t = 0.
  posterior_mean_coef1: jnp.ndarray  # (T,) beta_t sqrt(ab_{t-1}) / (1 - ab_t)
  posterior_mean_coef2: jnp.ndarray  # (T,) (1 - ab_{t-1}) sqrt(alpha_t) / (1 - ab_t)

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]


def _cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999):
  """Nichol & Dhariwal 2021: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2)."""
  # improved-diffusion's betas_for_alpha_bar: beta_t = 1 - f((t+1)/T) / f(t/T), clipped
  # because f(1) = 0 would make the last beta 1 (alpha_bar exactly 0, x0 unrecoverable).
  f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
  t = np.arange(num_timesteps, dtype=np.float64)
  return np.minimum(1 - f((t + 1) / num_timesteps) / f(t / num_timesteps), max_beta)


def _linear_betas(num_timesteps: int):
  """Ho et al. 2020, 1e-4 .. 2e-2 at T = 1000, rescaled for other T (improved-diffusion)."""
  scale = 1000 / num_timesteps
  return np.linspace(scale * 1e-4, scale * 2e-2, num_timesteps, dtype=np.float64)


def make_schedule(name: str = "cosine", num_timesteps: int = 1000) -> Schedule:
  if name not in SCHEDULE_NAMES:
    raise ValueError(f"diffusion.schedule={name!r}; expected one of {SCHEDULE_NAMES}")
  if int(num_timesteps) < 2:
    raise ValueError(f"diffusion.num_timesteps={num_timesteps}; expected >= 2")
  betas = _cosine_betas(num_timesteps) if name == "cosine" else _linear_betas(num_timesteps)
  if betas.max() >= 1.0:
    raise ValueError(
      f"diffusion.num_timesteps={num_timesteps} is too small for the "
      f"{name} schedule (beta reaches {betas.max():.3g} >= 1); use T >= 21"
    )
  alphas = 1.0 - betas
  ab = np.cumprod(alphas)
  ab_prev = np.concatenate([[1.0], ab[:-1]])
  post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
  post_log_var = np.log(np.concatenate([post_var[1:2], post_var[1:]]))
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  coef1 = betas * np.sqrt(ab_prev) / (1.0 - ab)
  coef2 = (1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab)
  return Schedule(
    f32(betas),
    f32(alphas),
    f32(ab),
    f32(ab_prev),
    f32(post_var),
    f32(post_log_var),
    f32(coef1),
    f32(coef2),
  )


def ddim_timesteps(num_timesteps: int, num_steps: int) -> np.ndarray:
  """The DDIM paper's uniform sub-sequence, descending and ending at 0.

  T=1000, 50 steps -> [980, 960, ..., 20, 0]; the sampler steps from each entry to the
  next, and from 0 to "t = -1" where alpha_bar is 1.
  """
  if not 1 <= int(num_steps) <= int(num_timesteps):
    raise ValueError(
      f"sample.num_steps={num_steps}; expected 1 <= num_steps <= num_timesteps={num_timesteps}"
    )
  stride = num_timesteps // num_steps
  return np.arange(0, num_timesteps, stride, dtype=np.int32)[:num_steps][::-1].copy()
