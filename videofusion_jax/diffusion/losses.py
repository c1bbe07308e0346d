"""Eq. 14: mean squared error between the true and the predicted noise.

The stop-gradient of Eq. 14 lives in `decomposed_denoise` (it must also cover the base
prediction inside the residual network's input); here the error is only split by frame
so the centre (base) and residual terms can be reported apart.
"""

from __future__ import annotations

import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import split_centre


def decomposed_loss(eps, eps_hat) -> dict[str, jnp.ndarray]:
  """-> {"loss": MSE over all frames, "loss_centre": centre frame, "loss_residual": rest}.

  `loss = (loss_centre + (N - 1) * loss_residual) / N`: the per-frame terms of Eq. 14
  summed over frames, averaged over pixels. The same keys serve the standard process
  (VDM baseline), where the split is just a frame-wise report.
  """
  sq = jnp.square(eps.astype(jnp.float32) - eps_hat.astype(jnp.float32))
  centre, others = split_centre(sq)
  return {"loss": sq.mean(), "loss_centre": centre.mean(), "loss_residual": others.mean()}
