"""Diffusion over CLIP image-embedding vectors (B, D) for the unCLIP prior: loss, samplers.

The prior predicts the clean (normalised) embedding x0 directly, as Karlo's prior does
(`prediction_type="sample"`); the noise it implies is eps = (z_t - sqrt(ab_t) x0) /
sqrt(1 - ab_t). An `x0_fn(z (B, D), t (B,) int32) -> x0_hat (B, D)` stands for the
model; classifier-free guidance wraps it with `guidance.classifier_free_guidance`
(linear in the prediction, so it applies to x0 as to eps: one batched call per step).

Keys: `key` is one typed key for the batch or a (B,) array of keys, one per vector (a
vector's noise then depends on its own key only). z_T is drawn from the key itself, the
fresh noise of the step leaving t from `fold_in(key, t)`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from videofusion_jax.diffusion.schedules import Schedule, ddim_timesteps


def _check_shape(shape) -> None:
  if len(shape) != 2 or min(shape) < 1:
    raise ValueError(f"shape={tuple(shape)}; expected embeddings (B, D)")


def normal(key, shape) -> jax.Array:
  """N(0, 1) of `shape` (B, D) from one key, or row b from key[b] for (B,) keys."""
  if jnp.ndim(key) == 0:
    return jax.random.normal(key, shape)
  if key.shape != shape[:1]:
    raise ValueError(f"key batch {key.shape} does not match shape {tuple(shape)}")
  return jax.vmap(lambda k: jax.random.normal(k, shape[1:]))(key)


def fold_in(key, t) -> jax.Array:
  return (
    jax.random.fold_in(key, t)
    if jnp.ndim(key) == 0
    else jax.vmap(lambda k: jax.random.fold_in(k, t))(key)
  )


def q_sample(x0, t, eps, alphas_cumprod) -> jax.Array:
  """z_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps for x0, eps (B, D), t (B,)."""
  ab = alphas_cumprod[t][:, None]
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def eps_from_x0(z, x0, ab_t) -> jax.Array:
  return (z - jnp.sqrt(ab_t) * x0) / jnp.sqrt(1.0 - ab_t)


def x0_loss(x0_fn: Callable, x0, key, schedule: Schedule):
  """MSE between x0_fn(z_t, t) and x0 (B, D) at uniform t -> (loss, per-example (B,))."""
  _check_shape(x0.shape)
  t_key, eps_key = jax.random.split(key)
  t = jax.random.randint(t_key, x0.shape[:1], 0, schedule.num_timesteps)
  z_t = q_sample(x0, t, jax.random.normal(eps_key, x0.shape), schedule.alphas_cumprod)
  per_example = jnp.mean(jnp.square(x0_fn(z_t, t).astype(jnp.float32) - x0), axis=-1)
  return jnp.mean(per_example), per_example


def _clip(x0, clip_range):
  return x0 if clip_range is None else jnp.clip(x0, -clip_range, clip_range)


def ddim_step(z, x0, ab_t, ab_s, *, eta: float = 0.0, noise=None):
  """One DDIM update from alpha_bar ab_t to ab_s given the x0 prediction (B, D)."""
  eps = eps_from_x0(z, x0, ab_t)
  z_s = jnp.sqrt(ab_s) * x0
  if eta > 0:
    sigma = eta * jnp.sqrt((1.0 - ab_s) / (1.0 - ab_t)) * jnp.sqrt(1.0 - ab_t / ab_s)
    return z_s + jnp.sqrt(jnp.maximum(1.0 - ab_s - sigma**2, 0.0)) * eps + sigma * noise
  return z_s + jnp.sqrt(1.0 - ab_s) * eps


def ddim_sample(
  x0_fn: Callable,
  schedule: Schedule,
  shape,
  key,
  *,
  num_steps: int = 25,
  eta: float = 0.0,
  clip_range: float | None = None,
):
  """DDIM over `ddim_timesteps(T, num_steps)` -> x0 (B, D), one `lax.scan`.

  `clip_range` clips each x0 estimate to [-r, r] (Karlo's prior: 10 on normalised
  embeddings) before the update; None leaves it as predicted.
  """
  _check_shape(shape)
  if not eta >= 0:
    raise ValueError(f"eta={eta}; expected eta >= 0")
  ts = ddim_timesteps(schedule.num_timesteps, num_steps)
  ab = schedule.alphas_cumprod
  ab_s = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])

  def body(z, xs):
    t, ab_t, ab_s = xs
    x0 = _clip(x0_fn(z, jnp.full(shape[:1], t, jnp.int32)), clip_range)
    noise = normal(fold_in(key, t), shape) if eta > 0 else None
    return ddim_step(z, x0, ab_t, ab_s, eta=eta, noise=noise), None

  z, _ = jax.lax.scan(body, normal(key, shape), (jnp.asarray(ts), ab[ts], ab_s))
  return z


def ddpm_sample(
  x0_fn: Callable, schedule: Schedule, shape, key, *, clip_range: float | None = None
):
  """Ancestral sampling over all T steps -> x0 (B, D), one `lax.scan`.

  z_{t-1} = coef1_t x0_hat + coef2_t z_t + sqrt(posterior variance_t) noise (none at
  t = 0): the posterior q(z_{t-1} | z_t, x0_hat) with the "fixed small" variance.
  """
  _check_shape(shape)
  s = schedule

  def body(z, t):
    x0 = _clip(x0_fn(z, jnp.full(shape[:1], t, jnp.int32)), clip_range)
    mu = s.posterior_mean_coef1[t] * x0 + s.posterior_mean_coef2[t] * z
    std = jnp.where(t > 0, jnp.sqrt(s.posterior_variance[t]), 0.0)
    return mu + std * normal(fold_in(key, t), shape), None

  z, _ = jax.lax.scan(
    body, normal(key, shape), jnp.arange(s.num_timesteps - 1, -1, -1, dtype=jnp.int32)
  )
  return z
