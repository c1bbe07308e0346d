"""Schedules against independent closed forms."""

import math

import numpy as np
import pytest

from videofusion_jax import diffusion


def _f(u):
  """Nichol & Dhariwal's unnormalised alpha_bar at u = t / T, s = 0.008."""
  return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2


@pytest.mark.parametrize("T", [1000, 50])
def test_cosine_alpha_bar_matches_closed_form(T):
  s = diffusion.make_schedule("cosine", T)
  # beta_t = 1 - f((t+1)/T) / f(t/T) telescopes: alpha_bar_t = f((t+1)/T) / f(0) for as
  # long as no beta was clipped. Only the last one is: f(1) = cos^2(pi/2) = 0 makes
  # beta_{T-1} = 1, clipped to 0.999, so alpha_bar_{T-1} = 0.001 f((T-1)/T) / f(0).
  for t in (0, 1, T // 4, T // 2, T - 2):
    np.testing.assert_allclose(s.alphas_cumprod[t], _f((t + 1) / T) / _f(0), rtol=2e-5)
  np.testing.assert_allclose(s.alphas_cumprod[T - 1], 0.001 * _f((T - 1) / T) / _f(0), rtol=2e-5)
  np.testing.assert_allclose(s.betas[T - 1], 0.999, rtol=1e-7)
  assert float(np.max(s.betas[:-1])) < 0.999
  assert np.all(np.diff(np.asarray(s.alphas_cumprod)) < 0)
  np.testing.assert_allclose(s.alphas, 1 - np.asarray(s.betas, np.float64), atol=1e-7)
  assert s.num_timesteps == T and s.betas.dtype == np.float32


def test_linear_betas_and_posterior_variance():
  s = diffusion.make_schedule("linear", 1000)
  np.testing.assert_allclose([s.betas[0], s.betas[-1]], [1e-4, 2e-2], rtol=1e-6)
  ab = np.cumprod(1 - np.linspace(1e-4, 2e-2, 1000))
  np.testing.assert_allclose(s.alphas_cumprod, ab, rtol=1e-5)
  assert np.all(np.diff(np.asarray(s.alphas_cumprod)) < 0)
  for t in (1, 10, 500, 999):
    expected = (1 - ab[t - 1]) / (1 - ab[t]) * (1 - ab[t] / ab[t - 1])
    np.testing.assert_allclose(s.posterior_variance[t], expected, rtol=1e-5)
    np.testing.assert_allclose(s.alphas_cumprod_prev[t], ab[t - 1], rtol=1e-6)
  assert float(s.posterior_variance[0]) == 0.0
  assert float(s.alphas_cumprod_prev[0]) == 1.0
  t = 300
  np.testing.assert_allclose(
    s.posterior_mean_coef1[t], (1 - ab[t] / ab[t - 1]) * np.sqrt(ab[t - 1]) / (1 - ab[t]), rtol=1e-5
  )
  np.testing.assert_allclose(
    s.posterior_mean_coef2[t], (1 - ab[t - 1]) * np.sqrt(ab[t] / ab[t - 1]) / (1 - ab[t]), rtol=1e-5
  )
  # improved-diffusion's clip: log of the variance, entry 0 (= 0) replaced by entry 1.
  np.testing.assert_allclose(
    s.posterior_log_variance_clipped[0], np.log(s.posterior_variance[1]), rtol=1e-6
  )
  np.testing.assert_allclose(
    s.posterior_log_variance_clipped[1:], np.log(s.posterior_variance[1:]), rtol=1e-5
  )
  # Other T: rescaled by 1000 / T so the total amount of noise stays comparable.
  s100 = diffusion.make_schedule("linear", 100)
  np.testing.assert_allclose([s100.betas[0], s100.betas[-1]], [1e-3, 0.2], rtol=1e-6)


def test_ddim_timesteps_uniform_descending():
  ts = diffusion.ddim_timesteps(1000, 50)
  np.testing.assert_array_equal(ts, np.arange(980, -1, -20))
  assert ts.dtype == np.int32
  np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 3), [666, 333, 0])
  np.testing.assert_array_equal(diffusion.ddim_timesteps(10, 10), np.arange(9, -1, -1))
  np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 1), [0])


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: diffusion.make_schedule("sigmoid"), "schedule='sigmoid'.*cosine"),
    (lambda: diffusion.make_schedule("cosine", 1), "num_timesteps=1"),
    (lambda: diffusion.make_schedule("linear", 10), "num_timesteps=10 is too small"),
    (lambda: diffusion.ddim_timesteps(1000, 0), "num_steps=0"),
    (lambda: diffusion.ddim_timesteps(100, 101), "num_steps=101"),
  ],
)
def test_bad_schedule_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
