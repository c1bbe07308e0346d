"""Remat, residual chunks and bfloat16 compute change speed/memory, not the math."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models import presets
from videofusion_jax.models.videofusion import VideoFusion

SCHEDULE = diffusion.make_schedule("cosine", 1000)
Z = jax.random.normal(jax.random.key(1), (2, 3, 8, 8, 3))
T = jnp.array([10, 700])


def model_with(**knobs):
  return VideoFusion(dataclasses.replace(presets.tiny(), **knobs), rngs=nnx.Rngs(0))


@functools.lru_cache(maxsize=None)
def loss_and_grads(**knobs):
  """Jitted loss and gradients w.r.t. the stored parameters, once per knob setting."""
  graphdef, state = nnx.split(model_with(**knobs))

  def loss(state):
    model = nnx.merge(graphdef, state).in_compute_dtype()
    return jnp.mean(model(Z, T, SCHEDULE.alphas_cumprod).eps.astype(jnp.float32) ** 2)
  return jax.jit(jax.value_and_grad(loss))(state)


def test_remat_gives_the_same_loss_and_gradients():
  (l0, g0), (l1, g1) = loss_and_grads(), loss_and_grads(remat=True)
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  graphdef, state = nnx.split(model_with(remat=True))
  jaxpr = str(jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(Z, T, SCHEDULE.alphas_cumprod)
                             .eps)(state))
  assert "remat" in jaxpr or "checkpoint" in jaxpr


def test_residual_chunks_give_the_same_prediction():
  one = model_with()(Z, T, SCHEDULE.alphas_cumprod).eps
  two = model_with(residual_chunks=2)(Z, T, SCHEDULE.alphas_cumprod).eps
  np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="residual_chunks=3 does not divide the 2 clips"):
    model_with(residual_chunks=3)(Z, T, SCHEDULE.alphas_cumprod)


def test_bfloat16_compute_keeps_float32_parameters_and_gradients():
  model = model_with(dtype="bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  low = model.in_compute_dtype()
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(low, nnx.Param)))
  loss, grads = loss_and_grads(dtype="bfloat16")
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  ref_loss, _ = loss_and_grads()
  np.testing.assert_allclose(loss, ref_loss, rtol=3e-2)  # bf16: ~3 significant digits
  assert float(loss) != float(ref_loss)  # and it really computed in bfloat16


def test_unknown_knob_values_are_refused_by_name():
  with pytest.raises(ValueError, match="model.dtype='float16'"):
    model_with(dtype="float16")
  with pytest.raises(ValueError, match="model.remat_policy='keep_all'"):
    model_with(remat_policy="keep_all")
