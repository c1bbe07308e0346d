"""Samplers: exact recovery with an oracle, coefficients, decomposed step noise, guidance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion

SHAPE = (2, 4, 4, 4, 3)
SCHEDULE = diffusion.make_schedule("cosine", 1000)
X0 = jax.random.uniform(jax.random.key(42), SHAPE, minval=-0.9, maxval=0.9)
KEY = jax.random.key


def oracle(z, t):
  """The noise that maps z back to the known X0 exactly."""
  ab = SCHEDULE.alphas_cumprod[t][:, None, None, None, None]
  return (z - jnp.sqrt(ab) * X0) / jnp.sqrt(1 - ab)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_oracle_returns_x0(eta):
  fn = jax.jit(lambda bk, rk: diffusion.ddim_sample(oracle, SCHEDULE, SHAPE, bk, rk,
                                                    num_steps=50, eta=eta))
  np.testing.assert_allclose(fn(KEY(0), KEY(1)), X0, atol=1e-5)


@pytest.mark.parametrize("variance,clip", [("fixed_small", False), ("fixed_small", True),
                                           ("learned_range", False)])
def test_ddpm_with_oracle_returns_x0(variance, clip):
  eps_fn = oracle if variance == "fixed_small" else (
      lambda z, t: (oracle(z, t), jnp.zeros_like(z)))
  out = jax.jit(lambda: diffusion.ddpm_sample(eps_fn, SCHEDULE, SHAPE, KEY(0), KEY(1),
                                              variance=variance, clip_x0=clip))()
  np.testing.assert_allclose(out, X0, atol=1e-4)


def test_ddim_step_coefficients_by_hand():
  z, eps = jnp.array(0.7), jnp.array(-0.4)
  ab_t, ab_s, eta, noise = 0.3, 0.6, 0.5, jnp.array(1.3)
  x0 = (0.7 - np.sqrt(0.7) * -0.4) / np.sqrt(0.3)
  sigma = 0.5 * np.sqrt((1 - 0.6) / (1 - 0.3) * (1 - 0.3 / 0.6))
  expected = np.sqrt(0.6) * x0 + np.sqrt(1 - 0.6 - sigma ** 2) * -0.4 + sigma * 1.3
  got, got_x0 = diffusion.ddim_step(z, eps, ab_t, ab_s, eta=eta, noise=noise, clip_x0=False)
  np.testing.assert_allclose([got, got_x0], [expected, x0], rtol=1e-5)


def test_ddpm_mean_is_corrected_algorithm_1():
  """With eps = 0 each step is z' = z / sqrt(alpha_t) + sqrt(var_t) * noise_t; T = 2."""
  eps_fn = lambda zz, t: jnp.zeros_like(zz)
  s2 = diffusion.make_schedule("cosine", 2)
  out = diffusion.ddpm_sample(eps_fn, s2, SHAPE, KEY(0), KEY(1), lam=0.5)
  z_T = diffusion.decomposed_noise(KEY(0), KEY(1), SHAPE, 0.5)
  n1 = diffusion.decomposed_noise(jax.random.fold_in(KEY(0), 1),
                                  jax.random.fold_in(KEY(1), 1), SHAPE, 0.5)
  z1 = z_T / jnp.sqrt(s2.alphas[1]) + jnp.sqrt(s2.posterior_variance[1]) * n1
  np.testing.assert_allclose(out, z1 / jnp.sqrt(s2.alphas[0]), rtol=1e-5, atol=1e-5)


def test_step_noise_is_decomposed_and_keyed():
  """With eps = 0 and eta = 1, the output is a fixed linear mix of the drawn noises:
  changing only the residual key leaves the centre frame (pure base noise) unchanged."""
  zero = lambda z, t: jnp.zeros_like(z)
  run = jax.jit(lambda bk, rk: diffusion.ddim_sample(zero, SCHEDULE, SHAPE, bk, rk,
                                                     num_steps=5, eta=1.0, clip_x0=False))
  a, b, c = run(KEY(0), KEY(1)), run(KEY(0), KEY(2)), run(KEY(3), KEY(1))
  centre = diffusion.centre_index(SHAPE[1])
  np.testing.assert_allclose(a[:, centre], b[:, centre], atol=1e-6)
  assert float(jnp.abs(a[:, 0] - b[:, 0]).min()) > 0
  assert float(jnp.abs(a[:, centre] - c[:, centre]).min()) > 0
  std = diffusion.ddpm_sample(zero, diffusion.make_schedule("cosine", 20), SHAPE, KEY(0),
                              KEY(1), noise_mode="standard")
  std2 = diffusion.ddpm_sample(zero, diffusion.make_schedule("cosine", 20), SHAPE, KEY(9),
                               KEY(1), noise_mode="standard")
  np.testing.assert_array_equal(std, std2)  # standard noise ignores the base key


def test_sampler_compiles_once_per_shape():
  traces = []

  def eps_fn(z, t):
    traces.append(1)
    return 0.1 * z

  fn = jax.jit(lambda bk, rk: diffusion.ddim_sample(eps_fn, SCHEDULE, SHAPE, bk, rk,
                                                    num_steps=10))
  fn(KEY(0), KEY(1))
  fn(KEY(2), KEY(3))
  assert len(traces) == 1 and fn._cache_size() == 1


def test_trajectory_has_one_estimate_per_step():
  _, traj = diffusion.ddim_sample(oracle, SCHEDULE, SHAPE, KEY(0), KEY(1), num_steps=7,
                                  return_trajectory=True)
  assert traj.shape == (7,) + SHAPE
  np.testing.assert_allclose(traj[-1], X0, atol=1e-5)


def test_guidance_is_one_batched_call():
  calls = []

  def eps_fn(z, t, cond):
    calls.append(z.shape[0])
    return z * cond[:, None, None, None, None]

  z = jnp.ones(SHAPE)
  cond = jnp.array([2.0, 3.0])
  guided = diffusion.classifier_free_guidance(eps_fn, cond, jnp.array([0.5]), 3.0)
  out = guided(z, jnp.array([10, 10]))
  assert calls == [2 * SHAPE[0]]
  expected = 0.5 + 3.0 * (cond - 0.5)
  np.testing.assert_allclose(out[:, 0, 0, 0, 0], expected, rtol=1e-6)
  plain = diffusion.classifier_free_guidance(eps_fn, cond, jnp.array([0.5]), 1.0)
  np.testing.assert_allclose(plain(z, jnp.array([1, 1]))[:, 0, 0, 0, 0], cond)


@pytest.mark.parametrize("call,match", [
    (lambda: diffusion.ddim_sample(oracle, SCHEDULE, SHAPE, KEY(0), KEY(1), num_steps=0),
     "num_steps=0"),
    (lambda: diffusion.ddim_sample(oracle, SCHEDULE, SHAPE, KEY(0), KEY(1), eta=-1.0),
     "eta=-1.0"),
    (lambda: diffusion.ddim_sample(oracle, SCHEDULE, SHAPE, KEY(0), KEY(1), lam=2.0),
     "lam=2.0"),
    (lambda: diffusion.ddim_sample(oracle, SCHEDULE, (2, 4, 4, 3), KEY(0), KEY(1)),
     "\\(B, N, H, W, C\\)"),
    (lambda: diffusion.ddpm_sample(oracle, SCHEDULE, SHAPE, KEY(0), KEY(1),
                                   variance="learned"), "variance='learned'"),
])
def test_bad_sampler_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
