"""Karlo's two super-resolution networks as one SR model: `first` until the last step.

Karlo's pipeline denoises the high-resolution image with `super_res_first` at every step
but the last and with `super_res_last` at the last one (a network tuned for the final,
nearly clean step). Every sampler of `diffusion/samplers.py` ends on timestep 0 (DDIM's
`ddim_timesteps` ends at 0, DDPM runs T-1..0) and visits it only there, so "the last
step" is "t == 0". `FinalStepSwitch` is called like any SR model (`from_config`'s model
contract) and picks the network with `lax.cond` on the batch's timestep: the samplers'
`lax.scan` stays one scan, one compile per shape, and only the chosen network runs.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models.superres import SuperRes

FINAL_TIMESTEP = 0  # the timestep of every sampler's last step


class FinalStepSwitch(nnx.Module):
  """`last` where every timestep of the batch is 0 (the sampler's last step), else
  `first`. Both are SuperRes models of the same config (same outputs, same shapes)."""

  def __init__(self, first: SuperRes, last: SuperRes):
    if first.config != last.config:
      raise ValueError(
        f"the last-step SR model's config differs from the first one's: "
        f"{last.config} vs {first.config}; both must be the same network"
      )
    self.config = first.config
    self.first = first
    self.last = last

  def in_compute_dtype(self) -> "FinalStepSwitch":
    first, last = self.first.in_compute_dtype(), self.last.in_compute_dtype()
    if first is self.first and last is self.last:
      return self
    return FinalStepSwitch(first, last)

  def __call__(
    self,
    z_t: jax.Array,
    t: jax.Array,
    alphas_cumprod: jax.Array,
    *,
    cond: Mapping[str, Any] | None = None,
    stop_base_grad: bool = True,
    rngs: nnx.Rngs | None = None,
  ) -> diffusion.DenoiseOutput:
    """The SR model's call; `t` (B,) holds one timestep for the whole batch when
    sampling (a mixed batch, as in training, goes to `first`)."""

    def run(model):
      return lambda: model(
        z_t, t, alphas_cumprod, cond=cond, stop_base_grad=stop_base_grad, rngs=rngs
      )

    return jax.lax.cond(jnp.all(t == FINAL_TIMESTEP), run(self.last), run(self.first))
