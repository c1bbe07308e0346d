"""Statistics of the decomposed noise and exact identities of Eq. 7-14."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion

KEY = jax.random.key
# Compile time dominates these tests: at XLA's default CPU optimisation level the
# threefry generator alone takes ~2 s per shape. The math does not depend on it.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
noise = fast_jit(diffusion.decomposed_noise, static_argnums=(2, 3))
noise_parts = fast_jit(diffusion.decomposed_noise_parts, static_argnums=2)
sample_noise = fast_jit(diffusion.sample_noise, static_argnums=(0, 3, 4))

SHAPE = (4096, 5, 2, 2, 1)  # many samples of a small video: 16k values per frame
N_PER_FRAME = 4096 * 2 * 2 * 1
# Five standard errors of each estimate at this sample size (values are independent
# across batch and pixels): mean 1/sqrt(n), variance sqrt(2/n), correlation <= 1/sqrt(n).
TOL_MEAN = 5 / np.sqrt(N_PER_FRAME)
TOL_VAR = 5 * np.sqrt(2 / N_PER_FRAME)
TOL_CORR = 5 / np.sqrt(N_PER_FRAME)
VIDEO = (3, 5, 4, 4, 2)  # the small video of the exact tests; centre frame 2
C, OTHERS = 2, np.array([0, 1, 3, 4])


def _per_frame(eps):
  return np.asarray(eps).transpose(1, 0, 2, 3, 4).reshape(eps.shape[1], -1)


@pytest.mark.parametrize("lam", [0.25, 0.5, 0.9])
def test_decomposed_noise_statistics(lam):
  flat = _per_frame(noise(KEY(0), KEY(1), SHAPE, lam))
  np.testing.assert_allclose(flat.mean(1), 0.0, atol=TOL_MEAN)
  np.testing.assert_allclose(flat.var(1), 1.0, atol=TOL_VAR)
  corr = np.corrcoef(flat)
  for i in range(5):
    for j in range(5):
      if i != j:
        expected = np.sqrt(lam) if C in (i, j) else lam  # sqrt(lam_i lam_j)
        assert abs(corr[i, j] - expected) < TOL_CORR, (i, j, corr[i, j], expected)


def test_standard_noise_is_independent_across_frames():
  eps = sample_noise("standard", KEY(0), KEY(1), SHAPE, 0.5)
  flat = _per_frame(eps)
  assert np.abs(np.corrcoef(flat) - np.eye(5)).max() < TOL_CORR
  np.testing.assert_allclose(flat.mean(1), 0.0, atol=TOL_MEAN)
  np.testing.assert_allclose(flat.var(1), 1.0, atol=TOL_VAR)
  # Standard noise is drawn from the residual key alone.
  np.testing.assert_array_equal(eps, sample_noise("standard", KEY(7), KEY(1), SHAPE, 0.5))


def test_same_base_key_shares_exactly_the_base_component():
  lam = 0.5
  a, b = noise(KEY(0), KEY(1), VIDEO, lam), noise(KEY(0), KEY(2), VIDEO, lam)
  np.testing.assert_array_equal(a[:, C], b[:, C])  # the centre frame is pure base
  _, r1 = noise_parts(KEY(0), KEY(1), VIDEO)
  _, r2 = noise_parts(KEY(0), KEY(2), VIDEO)
  np.testing.assert_allclose(
    a[:, OTHERS] - b[:, OTHERS], np.sqrt(1 - lam) * (r1 - r2)[:, OTHERS], atol=1e-6
  )
  d = noise(KEY(3), KEY(1), VIDEO, lam)
  assert float(jnp.abs(a[:, C] - d[:, C]).min()) > 0  # another base key: other base


def test_noise_is_the_composition_of_its_parts_and_lam_edge_cases():
  b, r = noise_parts(KEY(0), KEY(1), VIDEO)
  assert b.shape == (3, 1, 4, 4, 2) and r.shape == VIDEO
  lams = diffusion.frame_lambdas(5, 0.3)
  np.testing.assert_array_equal(lams, np.float32([0.3, 0.3, 1.0, 0.3, 0.3]))
  np.testing.assert_allclose(
    noise(KEY(0), KEY(1), VIDEO, 0.3),
    np.sqrt(lams)[None, :, None, None, None] * b + np.sqrt(1 - lams)[None, :, None, None, None] * r,
    atol=1e-6,
  )
  one = noise(KEY(0), KEY(1), VIDEO, 1.0)
  np.testing.assert_array_equal(one, jnp.broadcast_to(b, VIDEO))  # all base
  zero = noise(KEY(0), KEY(1), VIDEO, 0.0)
  np.testing.assert_array_equal(zero[:, OTHERS], r[:, OTHERS])  # all residual...
  np.testing.assert_array_equal(zero[:, C], b[:, 0])  # ...but the centre


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: diffusion.frame_lambdas(5, 1.5), "lam=1.5"),
    (lambda: diffusion.frame_lambdas(5, -0.1), "lam=-0.1"),
    (lambda: diffusion.frame_lambdas(1, 0.5), "num_frames=1"),
    (lambda: diffusion.decomposed_noise(KEY(0), KEY(1), (2, 4, 4, 3), 0.5), "\\(B, N, H, W, C\\)"),
    (lambda: diffusion.sample_noise("iid", KEY(0), KEY(1), VIDEO, 0.5), "noise_mode='iid'"),
    (lambda: diffusion.sample_noise("standard", KEY(0), KEY(1), VIDEO, 2.0), "lam=2.0"),
    (
      lambda: diffusion.decomposed_denoise(
        jnp.zeros(VIDEO), jnp.ones((3,)), 0.5, None, None, objective="x0"
      ),
      "objective='x0'",
    ),
    (
      lambda: diffusion.decomposed_denoise(jnp.zeros(VIDEO), jnp.ones((3,)), 1.2, None, None),
      "lam=1.2",
    ),
    (
      lambda: diffusion.standard_denoise(jnp.zeros(VIDEO), jnp.ones((3,)), None, objective="x0"),
      "objective='x0'",
    ),
  ],
)
def test_bad_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@functools.lru_cache(maxsize=None)
def _problem(lam=0.5):
  """x0 (3, 5, 4, 4, 2), its decomposed noise (b, r, eps), timesteps and z_t."""
  b, r = noise_parts(KEY(1), KEY(2), VIDEO)
  x0 = jnp.tanh(noise_parts(KEY(1), KEY(0), VIDEO)[1])  # in (-1, 1); reuses a compile
  eps = diffusion.compose_noise(b, r, diffusion.frame_lambdas(5, lam))
  t = jnp.array([3, 400, 990])
  ab = diffusion.make_schedule("cosine").alphas_cumprod
  return x0, b, r, eps, t, ab, diffusion.q_sample(x0, t, eps, ab)


def _oracles(x0, b, r, ab_t, lam, objective):
  """Networks that return the true b and r (or their v), computed from the known data."""
  a = jnp.sqrt(ab_t)[:, None, None, None]
  s = jnp.sqrt(1 - ab_t)[:, None, None, None]

  def base_fn(z_centre):
    if objective == "v":
      return diffusion.v_target(x0[:, C], b[:, 0], a, s)
    return b[:, 0]

  def residual_fn(z_res_others, centre_estimate):
    np.testing.assert_allclose(centre_estimate, a * x0[:, C], atol=1e-5)  # sqrt(ab) x0_c
    if objective == "v":
      return diffusion.v_target(
        x0[:, OTHERS], r[:, OTHERS], a[:, None], s[:, None] * np.sqrt(1 - lam)
      )
    return r[:, OTHERS]

  return base_fn, residual_fn


@pytest.mark.parametrize("objective,lam", [("eps", 0.5), ("v", 0.5), ("v", 0.9)])
def test_true_base_and_residual_give_the_true_noise_and_zero_loss(objective, lam):
  x0, b, r, eps, t, ab, z = _problem(lam)
  base_fn, residual_fn = _oracles(x0, b, r, ab[t], lam, objective)
  out = diffusion.decomposed_denoise(z, ab[t], lam, base_fn, residual_fn, objective=objective)
  np.testing.assert_allclose(out.eps, eps, atol=2e-4)
  np.testing.assert_allclose(out.b_hat, b[:, 0], atol=2e-4)
  np.testing.assert_allclose(out.r_hat, r[:, OTHERS], atol=2e-4)
  assert out.var_values is None
  losses = diffusion.decomposed_loss(eps, out.eps)
  assert all(float(v) < 1e-7 for v in losses.values())


def test_removing_the_true_base_leaves_only_residual_noise():
  lam = 0.5
  x0, b, r, _, t, ab, z = _problem(lam)
  z_res = diffusion.remove_base_noise(z, b[:, 0], diffusion.frame_lambdas(5, lam), ab[t])
  a = jnp.sqrt(ab[t])[:, None, None, None, None]
  s = jnp.sqrt(1 - ab[t])[:, None, None, None, None]
  np.testing.assert_allclose(
    z_res[:, OTHERS], a * x0[:, OTHERS] + s * np.sqrt(1 - lam) * r[:, OTHERS], atol=1e-5
  )
  np.testing.assert_allclose(z_res[:, C], a[:, 0] * x0[:, C], atol=1e-5)  # centre estimate


def test_v_round_trip_including_non_unit_sub_problems():
  x0, b, r, *_ = _problem()
  for alpha, sigma in [(0.6, 0.8), (0.3, 0.5), (0.99, 0.01), (0.05, 2.0)]:
    z = alpha * x0 + sigma * r
    v = diffusion.v_target(x0, r, alpha, sigma)
    np.testing.assert_allclose(diffusion.eps_from_v(z, v, alpha, sigma), r, atol=1e-5)
  # On a variance-preserving sub-problem v is the usual alpha eps - sigma x0.
  np.testing.assert_allclose(diffusion.v_target(x0, r, 0.6, 0.8), 0.6 * r - 0.8 * x0, atol=1e-6)


def test_compose_eps_never_reads_the_centre_residual():
  b_hat = jnp.ones((1, 2, 2, 1))
  r_hat = jnp.full((1, 3, 2, 2, 1), jnp.nan).at[:, [0, 2]].set(0.0)
  eps = diffusion.compose_eps(b_hat, r_hat, diffusion.frame_lambdas(3, 0.25))
  np.testing.assert_allclose(eps[:, 1], 1.0)
  np.testing.assert_allclose(eps[:, [0, 2]], 0.5)  # sqrt(0.25) * 1 + sqrt(0.75) * 0


def test_split_and_merge_centre_are_inverse():
  x = jnp.arange(3 * 6 * 2).reshape(3, 6, 2)
  np.testing.assert_array_equal(diffusion.other_frame_indices(6), [0, 1, 3, 4, 5])
  centre, others = diffusion.split_centre(x)
  np.testing.assert_array_equal(centre, x[:, 2])
  np.testing.assert_array_equal(others, x[:, diffusion.other_frame_indices(6)])
  np.testing.assert_array_equal(diffusion.merge_centre(centre, others), x)
  assert [diffusion.centre_index(n) for n in (2, 3, 4, 5, 16)] == [0, 1, 1, 2, 7]


def test_each_network_is_called_once_and_base_sees_only_the_centre():
  _, _, _, _, t, ab, z = _problem()
  calls = []

  def base_fn(zc):
    calls.append(("base", zc.shape))
    return jnp.tanh(zc) * 0.3

  def residual_fn(zr, ce):
    calls.append(("residual", zr.shape, ce.shape))
    return jnp.tanh(zr + ce[:, None])

  fn = jax.jit(lambda z: diffusion.decomposed_denoise(z, ab[t], 0.5, base_fn, residual_fn))
  out = fn(z)
  assert calls == [("base", (3, 4, 4, 2)), ("residual", (3, 4, 4, 4, 2), (3, 4, 4, 2))]
  z2 = z.at[:, 0].add(5.0).at[:, 4].add(-3.0)
  out2 = fn(z2)
  np.testing.assert_array_equal(out2.b_hat, out.b_hat)
  np.testing.assert_array_equal(out2.eps[:, C], out.eps[:, C])
  assert len(calls) == 2  # no retrace for new values


@pytest.mark.parametrize("objective", ["eps", "v"])
@pytest.mark.parametrize("stop", [True, False])
def test_stop_gradient_keeps_the_residual_loss_away_from_the_base(stop, objective):
  _, _, _, eps, t, ab, z = _problem()
  params = {"base": jnp.array(0.3), "residual": jnp.array(0.7)}

  def losses(p):  # two tiny linear "networks"
    out = diffusion.decomposed_denoise(
      z,
      ab[t],
      0.5,
      lambda zc: p["base"] * zc,
      lambda zr, ce: p["residual"] * zr + 0.1 * ce[:, None],
      objective=objective,
      stop_base_grad=stop,
    )
    return diffusion.decomposed_loss(eps, out.eps)

  g_res = jax.jit(jax.grad(lambda p: losses(p)["loss_residual"]))(params)
  g_cen = jax.jit(jax.grad(lambda p: losses(p)["loss_centre"]))(params)
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
  standard = diffusion.standard_loss(eps, eps_hat)
  assert {k: float(v) for k, v in standard.items()} == {k: float(v) for k, v in losses.items()}


def test_learned_variance_values_come_from_the_owning_network():
  lam = 0.5
  x0, b, r, eps, t, ab, z = _problem(lam)
  base_fn, residual_fn = _oracles(x0, b, r, ab[t], lam, "eps")
  vb = jnp.full(b[:, 0].shape, 0.25)
  vr = jnp.linspace(-1, 1, r[:, OTHERS].size).reshape(r[:, OTHERS].shape)
  out = diffusion.decomposed_denoise(
    z,
    ab[t],
    lam,
    lambda zc: jnp.concatenate([base_fn(zc), vb], -1),
    lambda zr, ce: jnp.concatenate([residual_fn(zr, ce), vr], -1),
    learned_variance=True,
  )
  np.testing.assert_allclose(out.eps, eps, atol=2e-4)
  np.testing.assert_array_equal(out.var_values[:, C], vb)
  np.testing.assert_array_equal(out.var_values[:, OTHERS], vr)
  # Without learned_variance the same 2C outputs are a shape error, named at trace time.
  with pytest.raises(ValueError, match="base_fn returned shape \\(3, 4, 4, 4\\)"):
    diffusion.decomposed_denoise(
      z, ab[t], lam, lambda zc: jnp.concatenate([zc, zc], -1), residual_fn
    )


def test_standard_denoise_v_objective_and_variance():
  x0, _, r, _, t, ab, _ = _problem()
  z = diffusion.q_sample(x0, t, r, ab)
  a = jnp.sqrt(ab[t])[:, None, None, None, None]
  v = diffusion.v_target(x0, r, a, jnp.sqrt(1 - ab[t])[:, None, None, None, None])
  out = diffusion.standard_denoise(
    z, ab[t], lambda zz: jnp.concatenate([v, -v], -1), objective="v", learned_variance=True
  )
  np.testing.assert_allclose(out.eps, r, atol=2e-4)
  np.testing.assert_array_equal(out.var_values, -v)
  assert out.b_hat is None and out.r_hat is None
