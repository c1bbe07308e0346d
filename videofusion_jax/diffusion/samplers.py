"""DDIM and DDPM sampling with decomposed noise, each one `lax.scan` (jit it outside).

An `eps_fn(z, t)` maps a noisy video z (B, N, H, W, C) and timesteps t (B,) to the
predicted noise, or to `(eps, var_values)` for DDPM with `variance="learned_range"`.
Keys: the initial noise comes from (base_key, residual_key); the fresh noise of step k
from `fold_in(base_key, k)` / `fold_in(residual_key, k)`, so the same base key gives
the same base noise at every step, whatever the residual key.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import NOISE_MODES, check_lam, sample_noise
from videofusion_jax.diffusion.schedules import Schedule, ddim_timesteps

DDPM_VARIANCES = ("fixed_small", "learned_range")


def _check(shape, lam, noise_mode):
  if len(shape) != 5 or shape[1] < 2:
    raise ValueError(f"shape={tuple(shape)}; expected a video shape (B, N, H, W, C) with "
                     "N >= 2")
  check_lam(lam)
  if noise_mode not in NOISE_MODES:
    raise ValueError(f"noise_mode={noise_mode!r}; expected one of {NOISE_MODES}")


def _step_noise(noise_mode, base_key, residual_key, k, shape, lam):
  return sample_noise(noise_mode, jax.random.fold_in(base_key, k),
                      jax.random.fold_in(residual_key, k), shape, lam)


def predict_x0(z, eps, ab_t):
  return (z - jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(ab_t)


def ddim_step(z, eps, ab_t, ab_s, *, eta: float = 0.0, noise=None, clip_x0: bool = True):
  """One DDIM update from alpha_bar `ab_t` to `ab_s` (scalars); returns (z_s, x0_hat).

  z_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps + sigma noise, with
  sigma = eta sqrt((1 - ab_s)/(1 - ab_t)) sqrt(1 - ab_t/ab_s). When x0_hat is clipped,
  eps is re-derived from it so the update stays on the DDIM trajectory.
  """
  x0 = predict_x0(z, eps, ab_t)
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
    eps = (z - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1.0 - ab_t)
  z_s = jnp.sqrt(ab_s) * x0
  if eta > 0:
    sigma = eta * jnp.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * jnp.sqrt(1.0 - ab_t / ab_s)
    z_s = z_s + jnp.sqrt(jnp.maximum(1.0 - ab_s - sigma ** 2, 0.0)) * eps + sigma * noise
  else:
    z_s = z_s + jnp.sqrt(1.0 - ab_s) * eps
  return z_s, x0


def ddim_sample(eps_fn: Callable, schedule: Schedule, shape, base_key, residual_key, *,
                lam: float = 0.5, num_steps: int = 50, eta: float = 0.0,
                clip_x0: bool = True, noise_mode: str = "decomposed",
                return_trajectory: bool = False):
  """DDIM over `num_steps` strided timesteps -> x0 (B, N, H, W, C).

  With `return_trajectory`, also the x0 estimates of every step (S, B, N, H, W, C).
  """
  _check(shape, lam, noise_mode)
  if eta < 0:
    raise ValueError(f"eta={eta}; expected eta >= 0")
  ts = ddim_timesteps(schedule.num_timesteps, num_steps)
  prev = jnp.concatenate([jnp.asarray(ts[1:]), jnp.array([-1], jnp.int32)])
  ab = schedule.alphas_cumprod
  batch = shape[0]

  def body(z, xs):
    k, t, s = xs
    eps = eps_fn(z, jnp.full((batch,), t, jnp.int32))
    ab_s = jnp.where(s >= 0, ab[jnp.maximum(s, 0)], 1.0)
    noise = (_step_noise(noise_mode, base_key, residual_key, k + 1, shape, lam)
             if eta > 0 else None)
    z, x0 = ddim_step(z, eps, ab[t], ab_s, eta=eta, noise=noise, clip_x0=clip_x0)
    return z, (x0 if return_trajectory else None)

  z = sample_noise(noise_mode, base_key, residual_key, shape, lam)
  z, traj = jax.lax.scan(body, z, (jnp.arange(len(ts)), jnp.asarray(ts), prev))
  return (z, traj) if return_trajectory else z


def ddpm_sample(eps_fn: Callable, schedule: Schedule, shape, base_key, residual_key, *,
                lam: float = 0.5, variance: str = "fixed_small", clip_x0: bool = False,
                noise_mode: str = "decomposed"):
  """Algorithm 1 as corrected in DESIGN.md: all T steps, fresh decomposed noise each.

  mu = (z - (1 - alpha_t) / sqrt(1 - ab_t) eps) / sqrt(alpha_t); with `clip_x0` the
  same posterior mean is computed from a clipped x0_hat. The variance is the posterior
  variance ("fixed_small"), or interpolated in log space between it and beta_t by the
  model's values in [-1, 1] ("learned_range", improved-diffusion).
  """
  _check(shape, lam, noise_mode)
  if variance not in DDPM_VARIANCES:
    raise ValueError(f"variance={variance!r}; expected one of {DDPM_VARIANCES}")
  learned = variance == "learned_range"
  s = schedule
  batch = shape[0]

  def body(z, t):
    out = eps_fn(z, jnp.full((batch,), t, jnp.int32))
    eps, v = out if learned else (out, None)
    alpha, ab_t, beta = s.alphas[t], s.alphas_cumprod[t], s.betas[t]
    if clip_x0:
      x0 = jnp.clip(predict_x0(z, eps, ab_t), -1.0, 1.0)
      mu = s.posterior_mean_coef1[t] * x0 + s.posterior_mean_coef2[t] * z
    else:
      mu = (z - (1.0 - alpha) / jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(alpha)
    if learned:
      frac = (v + 1.0) / 2.0
      std = jnp.exp(0.5 * (frac * jnp.log(beta) + (1.0 - frac) * s.posterior_log_variance_clipped[t]))
    else:
      std = jnp.sqrt(s.posterior_variance[t])
    noise = _step_noise(noise_mode, base_key, residual_key, t, shape, lam)
    return mu + jnp.where(t > 0, std, 0.0) * noise, None

  z = sample_noise(noise_mode, base_key, residual_key, shape, lam)
  z, _ = jax.lax.scan(body, z, jnp.arange(s.num_timesteps - 1, -1, -1, dtype=jnp.int32))
  return z
