"""Which videos share which noise: per-video keys and the Weizmann grouping rule.

The decomposition's controls (paper Sec 3.5, 4.7) are all statements about keys:
- per-video keys: video k of a request draws its base noise from `base_keys[k]` and its
  residual noise from `residual_keys[k]`, so its noise (and, with a deterministic
  sampler, the video) depends on its own keys only, not on the batch it was drawn in;
- the Weizmann training rule: inside a minibatch, clips of one identity share their
  base noise and clips of one action share their residual noise. The shared draws come
  from `fold_in(key, id)`, so the rule holds across the whole global batch however it
  is split over devices or processes.

A single key keeps the samplers' original behaviour (one draw of the batch shape); a
`(B,)` array of typed `jax.random.key`s draws per video.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import (
  _check_video_shape,
  check_lam,
  check_noise_mode,
  compose_noise,
  frame_lambdas,
  sample_noise,
)


def is_key_batch(key) -> bool:
  """True for a (B,) array of typed keys; False for one key (typed, or a raw uint32 key
  from `jax.random.PRNGKey`, which the samplers always treated as one key)."""
  dtype = getattr(key, "dtype", None)
  if dtype is None or not jnp.issubdtype(dtype, jax.dtypes.prng_key):
    return False
  if key.ndim > 1:
    raise ValueError(f"key array of shape {key.shape}; expected one key () or (B,) keys")
  return key.ndim == 1


def fold_in(key, data):
  """`jax.random.fold_in` for one key or a (B,) batch of keys (same `data` for each)."""
  if is_key_batch(key):
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(key)
  return jax.random.fold_in(key, data)


def video_keys(seed: int, first: int, count: int):
  """(count,) keys of videos first .. first+count-1: `fold_in(key(seed), k)` for video k.

  Video k's key depends only on (seed, k): a request for 4 videos and one for 40 give
  video 3 the same noise, whatever the batch size used to sample them.
  """
  if count < 1 or first < 0:
    raise ValueError(f"video_keys(first={first}, count={count}); expected first >= 0, count >= 1")
  root = jax.random.key(seed)
  return jax.vmap(lambda k: jax.random.fold_in(root, k))(
    jnp.arange(first, first + count, dtype=jnp.uint32)
  )


def per_video_noise(mode: str, base_keys, residual_keys, shape, lam: float) -> jnp.ndarray:
  """Noise of `shape` (B, N, H, W, C), video k drawn from (base_keys[k], residual_keys[k]).

  Each video gets exactly what `sample_noise(mode, base_keys[k], residual_keys[k],
  (1, N, H, W, C), lam)` would give it alone.
  """
  _check_video_shape(shape)
  for name, keys in (("base_keys", base_keys), ("residual_keys", residual_keys)):
    if not is_key_batch(keys) or keys.shape[0] != shape[0]:
      raise ValueError(
        f"{name} has shape {keys.shape}; expected ({shape[0]},) keys, one "
        f"per video of shape={tuple(shape)}"
      )
  one = (1,) + tuple(shape[1:])
  draw = jax.vmap(lambda kb, kr: sample_noise(mode, kb, kr, one, lam)[0])
  return draw(base_keys, residual_keys)


def draw_noise(mode: str, base_key, residual_key, shape, lam: float) -> jnp.ndarray:
  """`sample_noise` for single keys, `per_video_noise` for (B,) key arrays."""
  if is_key_batch(base_key) or is_key_batch(residual_key):
    return per_video_noise(mode, base_key, residual_key, shape, lam)
  return sample_noise(mode, base_key, residual_key, shape, lam)


def grouped_noise_parts(base_key, residual_key, shape, identity_ids, action_ids):
  """b (B, 1, H, W, C) shared per identity, r (B, N, H, W, C) shared per action.

  identity_ids, action_ids: (B,) integers. Clip k gets b = normal(fold_in(base_key,
  identity_ids[k])) and r = normal(fold_in(residual_key, action_ids[k])).
  """
  _check_video_shape(shape)
  b, n, h, w, c = shape
  for name, ids in (("identity_ids", identity_ids), ("action_ids", action_ids)):
    if tuple(jnp.shape(ids)) != (b,):
      raise ValueError(
        f"{name} has shape {tuple(jnp.shape(ids))}; expected ({b},), one "
        f"id per clip of shape={tuple(shape)}"
      )
  draw_b = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(base_key, i), (1, h, w, c)))
  draw_r = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(residual_key, i), (n, h, w, c)))
  return (
    draw_b(jnp.asarray(identity_ids, jnp.uint32)),
    draw_r(jnp.asarray(action_ids, jnp.uint32)),
  )


def grouped_noise(
  base_key, residual_key, shape, lam: float, identity_ids, action_ids
) -> jnp.ndarray:
  """Sec 4.7's training noise (B, N, H, W, C): Eq. 7 with the base noise shared across
  clips of the same identity and the residual noise across clips of the same action.

  Every clip's noise is still the decomposed process of Eq. 7 (standard normal per
  frame, corr sqrt(lam_i lam_j) between frames); only its draws are shared.
  """
  check_lam(lam)
  b, r = grouped_noise_parts(base_key, residual_key, shape, identity_ids, action_ids)
  return compose_noise(b, r, frame_lambdas(shape[1], lam))


def training_noise(mode: str, base_key, residual_key, shape, lam: float, groups=None):
  """The train step's noise: `sample_noise`, or `grouped_noise` when `groups` is
  `(identity_ids, action_ids)` (decomposed mode only: standard noise has no base)."""
  if groups is None:
    return sample_noise(mode, base_key, residual_key, shape, lam)
  check_noise_mode(mode)
  if mode != "decomposed":
    raise ValueError(
      f"diffusion.noise_mode={mode!r} with identity/action ids in the batch; "
      "the grouped (Weizmann) noise needs noise_mode='decomposed'"
    )
  return grouped_noise(base_key, residual_key, shape, lam, *groups)
