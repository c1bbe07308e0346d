"""Statistics of the decomposed noise and exact identities of Eq. 7-14."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion

SHAPE = (4096, 5, 2, 2, 1)  # many samples of a small video: 16k values per frame
KEY = jax.random.key


def _frame_corr(eps):
  flat = np.asarray(eps).transpose(1, 0, 2, 3, 4).reshape(eps.shape[1], -1)
  return np.corrcoef(flat)


@pytest.mark.parametrize("lam", [0.25, 0.5, 0.9])
def test_decomposed_noise_statistics(lam):
  eps = diffusion.decomposed_noise(KEY(0), KEY(1), SHAPE, lam)
  per_frame = np.asarray(eps).transpose(1, 0, 2, 3, 4).reshape(5, -1)
  np.testing.assert_allclose(per_frame.mean(1), 0.0, atol=0.03)
  np.testing.assert_allclose(per_frame.var(1), 1.0, atol=0.05)
  corr = _frame_corr(eps)
  c = diffusion.centre_index(5)
  for i in range(5):
    for j in range(5):
      if i == j:
        continue
      expected = np.sqrt(lam) if c in (i, j) else lam  # sqrt(lam_i lam_j)
      assert abs(corr[i, j] - expected) < 0.03, (i, j, corr[i, j], expected)


def test_standard_noise_is_independent_across_frames():
  eps = diffusion.sample_noise("standard", KEY(0), KEY(1), SHAPE, 0.5)
  corr = _frame_corr(eps)
  assert np.abs(corr - np.eye(5)).max() < 0.03


def test_same_base_key_shares_exactly_the_base_component():
  lam = 0.5
  a = diffusion.decomposed_noise(KEY(0), KEY(1), (2, 5, 4, 4, 3), lam)
  b = diffusion.decomposed_noise(KEY(0), KEY(2), (2, 5, 4, 4, 3), lam)
  c = diffusion.centre_index(5)
  np.testing.assert_array_equal(a[:, c], b[:, c])        # the centre frame is pure base
  _, r1 = diffusion.decomposed_noise_parts(KEY(0), KEY(1), (2, 5, 4, 4, 3))
  _, r2 = diffusion.decomposed_noise_parts(KEY(0), KEY(2), (2, 5, 4, 4, 3))
  others = diffusion.other_frame_indices(5)
  np.testing.assert_allclose(a[:, others] - b[:, others],
                             np.sqrt(1 - lam) * (r1 - r2)[:, others], atol=1e-6)
  d = diffusion.decomposed_noise(KEY(3), KEY(1), (2, 5, 4, 4, 3), lam)
  assert float(jnp.abs(a[:, c] - d[:, c]).min()) > 0     # another base key: other base


def test_lam_edge_cases():
  b, r = diffusion.decomposed_noise_parts(KEY(0), KEY(1), (1, 3, 2, 2, 1))
  one = diffusion.decomposed_noise(KEY(0), KEY(1), (1, 3, 2, 2, 1), 1.0)
  np.testing.assert_allclose(one, jnp.broadcast_to(b, one.shape), atol=1e-7)  # all base
  zero = diffusion.decomposed_noise(KEY(0), KEY(1), (1, 3, 2, 2, 1), 0.0)
  np.testing.assert_allclose(zero[:, [0, 2]], r[:, [0, 2]], atol=1e-7)  # centre still b
  np.testing.assert_allclose(zero[:, 1], b[:, 0], atol=1e-7)


@pytest.mark.parametrize("call,match", [
    (lambda: diffusion.frame_lambdas(5, 1.5), "lam=1.5"),
    (lambda: diffusion.frame_lambdas(5, -0.1), "lam=-0.1"),
    (lambda: diffusion.frame_lambdas(1, 0.5), "num_frames=1"),
    (lambda: diffusion.decomposed_noise(KEY(0), KEY(1), (2, 4, 4, 3), 0.5), "\\(B, N, H, W, C\\)"),
    (lambda: diffusion.sample_noise("iid", KEY(0), KEY(1), SHAPE, 0.5), "noise_mode='iid'"),
])
def test_bad_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def _problem(lam=0.5, n=5, seed=0):
  shape = (3, n, 4, 4, 2)
  x0 = jax.random.uniform(KEY(seed), shape, minval=-1, maxval=1)
  b, r = diffusion.decomposed_noise_parts(KEY(seed + 1), KEY(seed + 2), shape)
  lams = diffusion.frame_lambdas(n, lam)
  eps = diffusion.compose_noise(b, r, lams)
  t = jnp.array([3, 400, 990])
  ab = diffusion.make_schedule("cosine").alphas_cumprod
  return x0, b, r, eps, t, ab, diffusion.q_sample(x0, t, eps, ab)


def _oracles(x0, b, r, ab_t, lam, objective):
  """Networks that return the true b and r (or their v), computed from the known data."""
  c = diffusion.centre_index(x0.shape[1])
  others = diffusion.other_frame_indices(x0.shape[1])
  a = jnp.sqrt(ab_t)[:, None, None, None]
  s = jnp.sqrt(1 - ab_t)[:, None, None, None]

  def base_fn(z_centre):
    if objective == "v":
      return diffusion.v_target(x0[:, c], b[:, 0], a, s)
    return b[:, 0]

  def residual_fn(z_res_others, centre_estimate):
    np.testing.assert_allclose(centre_estimate, a * x0[:, c], atol=1e-5)  # sqrt(ab) x0_c
    if objective == "v":
      return diffusion.v_target(x0[:, others], r[:, others], a[:, None],
                                s[:, None] * np.sqrt(1 - lam))
    return r[:, others]

  return base_fn, residual_fn


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_true_base_and_residual_give_the_true_noise_and_zero_loss(objective):
  lam = 0.5
  x0, b, r, eps, t, ab, z = _problem(lam)
  base_fn, residual_fn = _oracles(x0, b, r, ab[t], lam, objective)
  out = diffusion.decomposed_denoise(z, ab[t], lam, base_fn, residual_fn, objective=objective)
  np.testing.assert_allclose(out.eps, eps, atol=2e-4)
  losses = diffusion.decomposed_loss(eps, out.eps)
  assert all(float(v) < 1e-7 for v in losses.values())


def test_removing_the_true_base_leaves_only_residual_noise():
  lam = 0.5
  x0, b, r, _, t, ab, z = _problem(lam)
  z_res = diffusion.remove_base_noise(z, b[:, 0], diffusion.frame_lambdas(5, lam), ab[t])
  a = jnp.sqrt(ab[t])[:, None, None, None, None]
  s = jnp.sqrt(1 - ab[t])[:, None, None, None, None]
  others = diffusion.other_frame_indices(5)
  np.testing.assert_allclose(z_res[:, others],
                             a * x0[:, others] + s * np.sqrt(1 - lam) * r[:, others], atol=1e-5)


def test_v_round_trip():
  x0 = jax.random.normal(KEY(0), (7,))
  eps = jax.random.normal(KEY(1), (7,))
  for alpha, sigma in [(0.6, 0.8), (0.3, 0.5), (0.99, 0.01)]:
    z = alpha * x0 + sigma * eps
    v = diffusion.v_target(x0, eps, alpha, sigma)
    np.testing.assert_allclose(diffusion.eps_from_v(z, v, alpha, sigma), eps, atol=1e-5)


def test_compose_eps_never_reads_the_centre_residual():
  b_hat = jnp.ones((1, 2, 2, 1))
  r_hat = jnp.full((1, 3, 2, 2, 1), jnp.nan).at[:, [0, 2]].set(0.0)
  eps = diffusion.compose_eps(b_hat, r_hat, diffusion.frame_lambdas(3, 0.25))
  np.testing.assert_allclose(eps[:, 1], 1.0)
  np.testing.assert_allclose(eps[:, [0, 2]], 0.5)  # sqrt(0.25) * 1 + sqrt(0.75) * 0


def test_split_and_merge_centre_are_inverse():
  x = jnp.arange(2 * 6).reshape(2, 6)
  centre, others = diffusion.split_centre(x)
  np.testing.assert_array_equal(centre, x[:, 2])
  np.testing.assert_array_equal(diffusion.merge_centre(centre, others), x)


def test_each_network_is_called_once_and_base_sees_only_the_centre():
  x0, b, r, eps, t, ab, z = _problem()
  calls = []

  def base_fn(zc):
    calls.append(("base", zc.shape))
    return jnp.tanh(zc) * 0.3

  def residual_fn(zr, ce):
    calls.append(("residual", zr.shape))
    return jnp.tanh(zr + ce[:, None])

  fn = jax.jit(lambda z: diffusion.decomposed_denoise(z, ab[t], 0.5, base_fn, residual_fn))
  out = fn(z)
  assert calls == [("base", (3, 4, 4, 2)), ("residual", (3, 4, 4, 4, 2))]
  c = diffusion.centre_index(5)
  z2 = z.at[:, 0].add(5.0).at[:, 4].add(-3.0)
  np.testing.assert_array_equal(fn(z2).b_hat, out.b_hat)
  np.testing.assert_array_equal(fn(z2).eps[:, c], out.eps[:, c])


@pytest.mark.parametrize("stop", [True, False])
def test_stop_gradient_keeps_the_residual_loss_away_from_the_base(stop):
  x0, b, r, eps, t, ab, z = _problem()
  params = {"base": jnp.array(0.3), "residual": jnp.array(0.7)}

  def losses(p):
    out = diffusion.decomposed_denoise(
        z, ab[t], 0.5, lambda zc: p["base"] * zc,
        lambda zr, ce: p["residual"] * zr + 0.1 * ce[:, None], stop_base_grad=stop)
    return diffusion.decomposed_loss(eps, out.eps)

  g_res = jax.grad(lambda p: losses(p)["loss_residual"])(params)
  g_cen = jax.grad(lambda p: losses(p)["loss_centre"])(params)
  assert float(g_res["residual"]) != 0.0
  assert (float(g_res["base"]) == 0.0) if stop else (float(g_res["base"]) != 0.0)
  assert float(g_cen["base"]) != 0.0 and float(g_cen["residual"]) == 0.0


def test_loss_is_the_frame_weighted_mean():
  eps = jnp.zeros((2, 4, 2, 2, 1))
  eps_hat = eps.at[:, 1].set(2.0).at[:, 0].set(1.0)  # centre of 4 frames is frame 1
  losses = diffusion.decomposed_loss(eps, eps_hat)
  assert float(losses["loss_centre"]) == pytest.approx(4.0)
  assert float(losses["loss_residual"]) == pytest.approx(1 / 3)
  assert float(losses["loss"]) == pytest.approx((4.0 + 3 * (1 / 3)) / 4)
