"""Eq. 14: mean squared error between the true and the predicted noise.

The stop-gradient of Eq. 14 lives in `decomposed_denoise` (it must also cover the base
prediction inside the residual network's input); here the error is only split by frame
so the centre (base) and residual terms can be reported apart.
"""

from __future__ import annotations

import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import split_centre


def decomposed_loss(eps, eps_hat) -> dict[str, jnp.ndarray]:
  """eps, eps_hat (B, N, H, W, C) -> {"loss", "loss_centre", "loss_residual"} scalars.

  `loss` is the MSE over all frames and pixels, i.e. the per-frame terms of Eq. 14
  summed over frames and averaged: `loss = (loss_centre + (N - 1) loss_residual) / N`.
  `loss_centre` is the centre frame's MSE (what trains the base generator),
  `loss_residual` the other frames' (what trains the residual generator). Computed in
  float32 whatever the inputs' dtype, so bfloat16 predictions do not round the loss.
  """
  sq = jnp.square(eps.astype(jnp.float32) - eps_hat.astype(jnp.float32))
  centre, others = split_centre(sq)
  return {"loss": sq.mean(), "loss_centre": centre.mean(), "loss_residual": others.mean()}


def standard_loss(eps, eps_hat) -> dict[str, jnp.ndarray]:
  """The VDM baseline's loss, with the same keys as `decomposed_loss`.

  The objective is the same plain MSE; the centre/other split is only a report there
  (no network owns the centre frame), kept so that the two processes' logs and
  tables compare key by key.
  """
  return decomposed_loss(eps, eps_hat)
