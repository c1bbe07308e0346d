"""DDIM and DDPM sampling with decomposed noise, each one `lax.scan` (jit it outside).

An `eps_fn(z, t)` maps a noisy video z (B, N, H, W, C) and timesteps t (B,) int32 to the
predicted noise eps_hat (B, N, H, W, C), or to `(eps_hat, var_values)` for a model with
learned variance (values in [-1, 1], used by DDPM's "learned_range", ignored otherwise).

Keys: the initial noise z_T comes from (base_key, residual_key) themselves; the fresh
noise of the step that leaves timestep t from `fold_in(base_key, t)` and
`fold_in(residual_key, t)`, in both samplers. The keys are single keys (one draw for
the batch) or (B,) arrays of typed keys, one per video (`noise_sharing.draw_noise`:
video k's noise then depends on its own keys only). So the same base key gives the same base
noise at every step whatever the residual key, and DDIM with eta = 1 over all T steps
draws exactly DDPM's noise (the two then agree: a check on both).

Shapes, `lam`, `num_steps`, `eta` and the mode names are static Python values: they are
validated before anything is traced and fix the compiled program, so a jitted sampler
compiles once per shape and settings and takes new keys without recompiling.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import check_lam, check_noise_mode
from videofusion_jax.diffusion.noise_sharing import draw_noise, fold_in
from videofusion_jax.diffusion.schedules import Schedule, ddim_timesteps

DDPM_VARIANCES = ("fixed_small", "learned_range")


def _check(shape, lam, noise_mode) -> None:
  if len(shape) != 5 or shape[1] < 2:
    raise ValueError(f"shape={tuple(shape)}; expected a video shape (B, N, H, W, C) with N >= 2")
  check_lam(lam)
  check_noise_mode(noise_mode)


def _step_noise(noise_mode, base_key, residual_key, t, shape, lam):
  """Fresh noise for the step leaving timestep t (decomposed: new b and new r)."""
  return draw_noise(noise_mode, fold_in(base_key, t), fold_in(residual_key, t), shape, lam)


def _split_output(out):
  """eps_fn output -> (eps, var_values or None)."""
  if isinstance(out, tuple):
    if len(out) != 2:
      raise ValueError(
        f"eps_fn returned a tuple of {len(out)} items; expected eps or (eps, var_values)"
      )
    return out
  return out, None


def predict_x0(z, eps, ab_t):
  """x0_hat = (z - sqrt(1 - ab_t) eps) / sqrt(ab_t); ab_t a scalar or broadcastable."""
  return (z - jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(ab_t)


def ddim_step(z, eps, ab_t, ab_s, *, eta: float = 0.0, noise=None, clip_x0: bool = True):
  """One DDIM update of z (B, N, H, W, C) from alpha_bar `ab_t` to `ab_s` (scalars).

  z_s = sqrt(ab_s) x0_hat + sqrt(1 - ab_s - sigma^2) eps + sigma noise, with
  sigma = eta sqrt((1 - ab_s)/(1 - ab_t)) sqrt(1 - ab_t/ab_s). When x0_hat is clipped,
  eps is re-derived from it (as diffusers does) so that z_s is the DDIM update of a
  consistent (x0_hat, eps) pair. Returns (z_s, x0_hat), both (B, N, H, W, C).
  """
  x0 = predict_x0(z, eps, ab_t)
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
    eps = (z - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1.0 - ab_t)
  return ddim_update(x0, eps, ab_t, ab_s, eta=eta, noise=noise), x0


def ddim_update(x0, eps, ab_t, ab_s, *, eta: float = 0.0, noise=None):
  """`ddim_step`'s move to `ab_s` for a consistent pair (x0, eps) at `ab_t`: a draw from
  DDIM's q_sigma(z_s | z_t, x0) with eps = (z_t - sqrt(ab_t) x0) / sqrt(1 - ab_t). Apart
  so that frames whose x0 is known (a long video's replaced frames) can take the same
  step as the others with their true x0."""
  z_s = jnp.sqrt(ab_s) * x0
  if eta > 0:
    sigma = eta * jnp.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * jnp.sqrt(1.0 - ab_t / ab_s)
    # max(., 0): for eta > 1 sigma^2 can exceed 1 - ab_s; float error can too at eta = 1.
    return z_s + jnp.sqrt(jnp.maximum(1.0 - ab_s - sigma**2, 0.0)) * eps + sigma * noise
  return z_s + jnp.sqrt(1.0 - ab_s) * eps


def ddim_sample(
  eps_fn: Callable,
  schedule: Schedule,
  shape,
  base_key,
  residual_key,
  *,
  lam: float = 0.5,
  num_steps: int = 50,
  eta: float = 0.0,
  clip_x0: bool = True,
  noise_mode: str = "decomposed",
  return_trajectory: bool = False,
):
  """DDIM over `ddim_timesteps(T, num_steps)` -> x0 of `shape` (B, N, H, W, C).

  Steps t_k -> t_{k+1} down the descending list, and 0 -> "t = -1" (alpha_bar = 1) last.
  eta = 0 is deterministic given z_T; eta > 0 adds fresh noise of `noise_mode` per step.
  With `return_trajectory`, returns (x0, x0 estimates of every step (S, B, N, H, W, C)).
  """
  _check(shape, lam, noise_mode)
  if not eta >= 0:
    raise ValueError(f"eta={eta}; expected eta >= 0")
  ts = ddim_timesteps(schedule.num_timesteps, num_steps)  # validates num_steps
  ab = schedule.alphas_cumprod
  ab_t = ab[ts]
  ab_s = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])
  batch = shape[0]

  def body(z, xs):
    t, ab_t, ab_s = xs
    eps, _ = _split_output(eps_fn(z, jnp.full((batch,), t, jnp.int32)))
    noise = _step_noise(noise_mode, base_key, residual_key, t, shape, lam) if eta > 0 else None
    z, x0 = ddim_step(z, eps, ab_t, ab_s, eta=eta, noise=noise, clip_x0=clip_x0)
    return z, (x0 if return_trajectory else None)

  z = draw_noise(noise_mode, base_key, residual_key, shape, lam)
  z, traj = jax.lax.scan(body, z, (jnp.asarray(ts), ab_t, ab_s))
  return (z, traj) if return_trajectory else z


def ddpm_step(
  z,
  eps,
  t,
  schedule: Schedule,
  *,
  noise,
  var_values=None,
  variance: str = "fixed_small",
  clip_x0: bool = False,
):
  """One step of `ddpm_sample` from timestep `t` (a scalar): the posterior mean from
  (z, eps), plus `noise` at the step's standard deviation (none at t = 0). Elementwise,
  so z may be a video or an image batch; `var_values` are the model's learned-range
  values ("learned_range" only)."""
  s = schedule
  alpha, ab_t, beta = s.alphas[t], s.alphas_cumprod[t], s.betas[t]
  if clip_x0:
    x0 = jnp.clip(predict_x0(z, eps, ab_t), -1.0, 1.0)
    mu = s.posterior_mean_coef1[t] * x0 + s.posterior_mean_coef2[t] * z
  else:
    mu = (z - (1.0 - alpha) / jnp.sqrt(1.0 - ab_t) * eps) / jnp.sqrt(alpha)
  if variance == "learned_range":
    frac = (var_values + 1.0) / 2.0
    log_var = frac * jnp.log(beta) + (1.0 - frac) * s.posterior_log_variance_clipped[t]
    std = jnp.exp(0.5 * log_var)
  else:
    std = jnp.sqrt(s.posterior_variance[t])
  return mu + jnp.where(t > 0, std, 0.0) * noise


def ddpm_sample(
  eps_fn: Callable,
  schedule: Schedule,
  shape,
  base_key,
  residual_key,
  *,
  lam: float = 0.5,
  variance: str = "fixed_small",
  clip_x0: bool = False,
  noise_mode: str = "decomposed",
):
  """Algorithm 1 as corrected in docs/math.md over all T steps -> x0 of `shape` (B, N, H, W, C).

  mu = (z - (1 - alpha_t) / sqrt(1 - ab_t) eps) / sqrt(alpha_t); with `clip_x0` the same
  posterior mean is computed as coef1 x0_hat + coef2 z from a clipped x0_hat. The
  variance is the posterior variance ("fixed_small"), or interpolated in log space
  between it (clipped at t = 0) and beta_t by the model's values v in [-1, 1]
  ("learned_range", improved-diffusion): log var = f log beta + (1 - f) log var_post,
  f = (v + 1) / 2. Fresh decomposed noise at every t > 0, none at t = 0.
  """
  _check(shape, lam, noise_mode)
  if variance not in DDPM_VARIANCES:
    raise ValueError(f"variance={variance!r}; expected one of {DDPM_VARIANCES}")
  learned = variance == "learned_range"
  s = schedule
  batch = shape[0]

  def body(z, t):
    eps, v = _split_output(eps_fn(z, jnp.full((batch,), t, jnp.int32)))
    if learned and v is None:
      raise ValueError("variance='learned_range' needs eps_fn to return (eps, var_values)")
    noise = _step_noise(noise_mode, base_key, residual_key, t, shape, lam)
    return ddpm_step(
      z, eps, t, s, noise=noise, var_values=v, variance=variance, clip_x0=clip_x0
    ), None

  z = draw_noise(noise_mode, base_key, residual_key, shape, lam)
  z, _ = jax.lax.scan(body, z, jnp.arange(s.num_timesteps - 1, -1, -1, dtype=jnp.int32))
  return z
