"""Classifier-free guidance over a whole-video denoiser, in one batched call per step."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp


def classifier_free_guidance(
  eps_fn: Callable, cond: Any, null_cond: Any, scale: float | None
) -> Callable:
  """-> `guided(z (B, N, H, W, C), t (B,))` = eps_u + scale * (eps_c - eps_u).

  `eps_fn(z, t, cond)` returns eps (B, N, H, W, C) or (eps, var_values); `cond` and
  `null_cond` are pytrees of arrays with the batch axis first. The conditional and
  unconditional branches run as ONE call on the doubled batch [z; z] with conditions
  [cond; null_cond]; inside it, each branch computes its own base prediction before its
  residual input (Eq. 12), as docs/math.md says. Variance values come from the conditional
  branch. `null_cond` leaves may have batch 1; they are broadcast to `cond`'s batch.
  With `scale` None or 1 the model runs once on the conditional batch.
  """
  if scale is not None and not isinstance(scale, numbers.Real):
    # The branch below is chosen in Python: a traced scale cannot pick it.
    raise ValueError(f"scale={scale!r}; expected a Python number or None")
  if scale is None or scale == 1.0:
    return lambda z, t: eps_fn(z, t, cond)

  def double(c, u):
    return jnp.concatenate([c, jnp.broadcast_to(u, c.shape).astype(c.dtype)], axis=0)

  both = jax.tree.map(double, cond, null_cond)

  def guided(z, t):
    out = eps_fn(jnp.concatenate([z, z], axis=0), jnp.concatenate([t, t], axis=0), both)
    eps, var = (out, None) if not isinstance(out, tuple) else out
    eps_c, eps_u = jnp.split(eps, 2, axis=0)
    eps = eps_u + scale * (eps_c - eps_u)
    return eps if var is None else (eps, jnp.split(var, 2, axis=0)[0])

  return guided
