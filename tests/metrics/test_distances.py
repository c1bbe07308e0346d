"""Fréchet distance and polynomial MMD against closed forms and brute force."""

import numpy as np
import pytest
import scipy.linalg

from videofusion_jax.metrics import fvd


def _random_psd(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / d + (0 if rank else 1e-3 * np.eye(d))


def test_frechet_diagonal_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
  v1, v2 = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  got = fvd.frechet_distance_from_stats(mu1, np.diag(v1), mu2, np.diag(v2))
  assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_frechet_full_covariance_matches_sqrtm_and_is_symmetric():
  rng = np.random.default_rng(1)
  s1, s2 = _random_psd(rng, 20), _random_psd(rng, 20)
  mu1, mu2 = rng.normal(size=20), rng.normal(size=20)
  want = (
    np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
  )
  assert fvd.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
  assert fvd.frechet_distance_from_stats(mu2, s2, mu1, s1) == pytest.approx(want, rel=1e-9)


def test_frechet_of_samples_approaches_the_gaussians_distance():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(200_000, 3)) * [1.0, 2.0, 0.5]
  y = rng.normal(size=(200_000, 3)) * [2.0, 1.0, 0.5] + [1.0, 0.0, 0.0]
  want = 1.0 + (1 - 2) ** 2 + (2 - 1) ** 2  # |dmu|^2 + sum (sqrt v1 - sqrt v2)^2
  assert fvd.frechet_distance(x, y) == pytest.approx(want, abs=0.03)


def test_frechet_identical_and_rank_deficient_sets():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(10, 50)) * 30  # 10 samples in 50-d: rank 9
  assert abs(fvd.frechet_distance(x, x)) < 1e-6 * np.trace(np.cov(x.T))
  y = x + rng.normal(size=x.shape)
  assert np.isfinite(fvd.frechet_distance(x, y)) and fvd.frechet_distance(x, y) > 0


def test_frechet_of_a_set_with_itself_is_never_below_zero():
  # 16 videos' 400 I3D-like logits: the rank-deficient square root's rounding made this
  # about -0.007 (the CLI printed -0.0004 for real I3D features).
  for seed in range(3):
    x = np.random.default_rng(seed).normal(size=(16, 400)) * 10
    assert fvd.frechet_distance(x, x) == 0.0
  x = np.random.default_rng(0).normal(size=(16, 400)) * 10
  assert fvd.frechet_distance(x, x + 1.0) == pytest.approx(400.0, rel=1e-3)  # not clamped


def test_frechet_is_computed_in_float64():
  # Large offset, tiny spread: float32 statistics would lose the variance entirely.
  rng = np.random.default_rng(4)
  x = (1e4 + rng.normal(size=(500, 4))).astype(np.float32)
  assert abs(fvd.frechet_distance(x, x)) < 1e-6
  assert fvd.frechet_distance(x, x + np.float32(1.0)) == pytest.approx(4.0, rel=1e-3)


def _mmd_brute(x, y):
  d = x.shape[1]
  k = lambda a, b: (a @ b / d + 1) ** 3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return xx + yy - 2 * xy


def test_polynomial_mmd_matches_brute_force():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(7, 4)), rng.normal(size=(9, 4)) + 0.3
  assert fvd.polynomial_mmd(x, y) == pytest.approx(_mmd_brute(x, y), rel=1e-12)
  assert fvd.polynomial_mmd(x, y) == pytest.approx(fvd.polynomial_mmd(y, x), rel=1e-12)


def test_polynomial_mmd_is_unbiased_zero_for_one_distribution():
  rng = np.random.default_rng(6)
  same = [
    fvd.polynomial_mmd(rng.normal(size=(20, 5)), rng.normal(size=(20, 5))) for _ in range(400)
  ]
  shifted = [
    fvd.polynomial_mmd(rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) + 0.5) for _ in range(100)
  ]
  se = np.std(same) / np.sqrt(len(same))
  assert abs(np.mean(same)) < 3 * se  # unbiased: zero in expectation
  assert min(same) < 0  # (a biased V-statistic is never negative)
  assert np.mean(shifted) > 10 * se


def test_bad_feature_inputs_raise():
  with pytest.raises(ValueError, match="dimension"):
    fvd.frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="n >= 2"):
    fvd.polynomial_mmd(np.zeros((1, 3)), np.zeros((4, 3)))
  with pytest.raises(ValueError, match="NaN"):
    fvd.frechet_distance(np.full((4, 3), np.nan), np.zeros((4, 3)))


def test_rank_warning_says_how_many_videos(caplog):
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)
  with caplog.at_level("WARNING"):
    fvd.warn_if_rank_deficient(100, 400, "fake")
  assert "at least 401" in caplog.text
