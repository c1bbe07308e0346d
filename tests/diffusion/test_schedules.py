"""Schedules against independent closed forms."""

import math

import numpy as np
import pytest

from videofusion_jax import diffusion


def test_cosine_alpha_bar_matches_closed_form():
  s = diffusion.make_schedule("cosine", 1000)
  f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
  # Before beta clipping bites (t < ~990), alpha_bar_t = f(t + 1) / f(0).
  for t in (0, 1, 250, 500, 900):
    np.testing.assert_allclose(s.alphas_cumprod[t], f(t + 1) / f(0), rtol=1e-5)
  assert float(np.max(s.betas)) == pytest.approx(0.999)
  assert np.all(np.diff(np.asarray(s.alphas_cumprod)) < 0)


def test_linear_betas_and_posterior_variance():
  s = diffusion.make_schedule("linear", 1000)
  np.testing.assert_allclose([s.betas[0], s.betas[-1]], [1e-4, 2e-2], rtol=1e-6)
  ab = np.cumprod(1 - np.linspace(1e-4, 2e-2, 1000))
  np.testing.assert_allclose(s.alphas_cumprod, ab, rtol=1e-5)
  for t in (1, 10, 999):
    expected = (1 - ab[t - 1]) / (1 - ab[t]) * (1 - ab[t] / ab[t - 1])
    np.testing.assert_allclose(s.posterior_variance[t], expected, rtol=1e-5)
  assert float(s.posterior_variance[0]) == 0.0
  t = 300
  np.testing.assert_allclose(s.posterior_mean_coef1[t],
                             (1 - ab[t] / ab[t - 1]) * np.sqrt(ab[t - 1]) / (1 - ab[t]), rtol=1e-5)
  np.testing.assert_allclose(s.posterior_mean_coef2[t],
                             (1 - ab[t - 1]) * np.sqrt(ab[t] / ab[t - 1]) / (1 - ab[t]), rtol=1e-5)
  assert float(s.alphas_cumprod_prev[0]) == 1.0
  np.testing.assert_allclose(s.posterior_log_variance_clipped[0],
                             np.log(s.posterior_variance[1]), rtol=1e-6)
  # Other T: rescaled so the total amount of noise stays comparable (improved-diffusion).
  np.testing.assert_allclose(diffusion.make_schedule("linear", 100).betas[0], 1e-3, rtol=1e-6)


def test_ddim_timesteps_uniform_descending():
  ts = diffusion.ddim_timesteps(1000, 50)
  np.testing.assert_array_equal(ts, np.arange(980, -1, -20))
  np.testing.assert_array_equal(diffusion.ddim_timesteps(10, 10), np.arange(9, -1, -1))


@pytest.mark.parametrize("call,match", [
    (lambda: diffusion.make_schedule("sigmoid"), "schedule='sigmoid'.*cosine"),
    (lambda: diffusion.make_schedule("cosine", 1), "num_timesteps=1"),
    (lambda: diffusion.make_schedule("linear", 10), "num_timesteps=10 is too small"),
    (lambda: diffusion.ddim_timesteps(1000, 0), "num_steps=0"),
    (lambda: diffusion.ddim_timesteps(100, 101), "num_steps=101"),
])
def test_bad_schedule_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
