"""Samplers: exact recovery with an oracle, coefficients, decomposed step noise, guidance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion

KEY = jax.random.key
# Compile time dominates these tests: at XLA's default CPU optimisation level the
# threefry generator alone takes ~2 s per shape, and every sampler holds a few. The
# math does not depend on it, so the tests compile without backend optimisations.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
noise = fast_jit(diffusion.decomposed_noise, static_argnums=(2, 3))

SHAPE = (2, 4, 4, 4, 3)
SCHEDULE = diffusion.make_schedule("cosine", 1000)
X0 = fast_jit(lambda k: jax.random.uniform(k, SHAPE, minval=-0.9, maxval=0.9))(KEY(42))


def oracle(z, t):
  """The noise that maps z back to the known X0 exactly."""
  ab = SCHEDULE.alphas_cumprod[t][:, None, None, None, None]
  return (z - jnp.sqrt(ab) * X0) / jnp.sqrt(1 - ab)


@pytest.mark.parametrize("eta,with_variance", [(0.0, False), (1.0, False), (0.0, True)])
def test_ddim_with_oracle_returns_x0(eta, with_variance):
  # A learned-variance model's (eps, var_values) is accepted; DDIM ignores the variance.
  eps_fn = (lambda z, t: (oracle(z, t), jnp.ones_like(z))) if with_variance else oracle
  fn = fast_jit(
    lambda bk, rk: diffusion.ddim_sample(eps_fn, SCHEDULE, SHAPE, bk, rk, num_steps=50, eta=eta)
  )
  np.testing.assert_allclose(fn(KEY(0), KEY(1)), X0, atol=1e-5)


@pytest.mark.parametrize(
  "variance,clip", [("fixed_small", False), ("fixed_small", True), ("learned_range", False)]
)
def test_ddpm_with_oracle_returns_x0(variance, clip):
  eps_fn = oracle if variance == "fixed_small" else (lambda z, t: (oracle(z, t), jnp.zeros_like(z)))
  out = fast_jit(
    lambda: diffusion.ddpm_sample(
      eps_fn, SCHEDULE, SHAPE, KEY(0), KEY(1), variance=variance, clip_x0=clip
    )
  )()
  np.testing.assert_allclose(out, X0, atol=1e-4)


def test_ddim_step_coefficients_by_hand():
  z, eps = jnp.array(0.7), jnp.array(-0.4)
  ab_t, ab_s, eta, noise = 0.3, 0.6, 0.5, jnp.array(1.3)
  x0 = (0.7 - np.sqrt(0.7) * -0.4) / np.sqrt(0.3)
  sigma = 0.5 * np.sqrt((1 - 0.6) / (1 - 0.3) * (1 - 0.3 / 0.6))
  expected = np.sqrt(0.6) * x0 + np.sqrt(1 - 0.6 - sigma**2) * -0.4 + sigma * 1.3
  got, got_x0 = diffusion.ddim_step(z, eps, ab_t, ab_s, eta=eta, noise=noise, clip_x0=False)
  np.testing.assert_allclose([got, got_x0], [expected, x0], rtol=1e-5)


@pytest.mark.parametrize(
  "variance,v", [("fixed_small", None), ("learned_range", 0.5), ("learned_range", -1.0)]
)
def test_ddpm_steps_by_hand(variance, v):
  """Corrected Algorithm 1 with eps = 0 and T = 2: z_0 = z_1 / sqrt(alpha_0) (no noise at
  t = 0) and z_1 = z_T / sqrt(alpha_1) + std_1 n_1, with n_1 from fold_in(key, 1) and
  std_1^2 the posterior variance, or exp(f log beta_1 + (1 - f) log var_post_1) with
  f = (v + 1) / 2 for learned_range."""
  s2 = diffusion.make_schedule("cosine", 2)
  eps_fn = (
    (lambda z, t: jnp.zeros_like(z))
    if v is None
    else (lambda z, t: (jnp.zeros_like(z), jnp.full_like(z, v)))
  )
  out = fast_jit(
    lambda: diffusion.ddpm_sample(eps_fn, s2, SHAPE, KEY(0), KEY(1), lam=0.5, variance=variance)
  )()
  betas = np.float64(s2.betas)
  ab = np.cumprod(1 - betas)
  var_post = betas[1] * (1 - ab[0]) / (1 - ab[1])
  var = (
    var_post
    if v is None
    else np.exp((v + 1) / 2 * np.log(betas[1]) + (1 - v) / 2 * np.log(var_post))
  )
  z_T = noise(KEY(0), KEY(1), SHAPE, 0.5)
  n1 = noise(jax.random.fold_in(KEY(0), 1), jax.random.fold_in(KEY(1), 1), SHAPE, 0.5)
  z1 = z_T / np.sqrt(1 - betas[1]) + np.sqrt(var) * n1
  np.testing.assert_allclose(out, z1 / np.sqrt(1 - betas[0]), rtol=1e-5, atol=1e-5)


def test_ddim_step_noise_is_decomposed_and_keyed_by_timestep():
  """eps = 0, eta = 1, two steps (t = 500 -> 0 -> "-1"): by hand the output is
  z_T / sqrt(ab_500) + sigma_500 n_500 / sqrt(ab_0), with z_T from the keys themselves and
  n_500 decomposed noise from fold_in(key, 500). Changing only the residual key leaves
  the centre frame (pure base noise at every step) bit-identical."""
  zero = lambda z, t: jnp.zeros_like(z)
  run = fast_jit(
    lambda bk, rk: diffusion.ddim_sample(
      zero, SCHEDULE, SHAPE, bk, rk, lam=0.3, num_steps=2, eta=1.0, clip_x0=False
    )
  )
  ab0, ab500 = SCHEDULE.alphas_cumprod[0], SCHEDULE.alphas_cumprod[500]
  sigma = np.sqrt((1 - ab0) / (1 - ab500) * (1 - ab500 / ab0))
  z_T = noise(KEY(0), KEY(1), SHAPE, 0.3)
  n500 = noise(jax.random.fold_in(KEY(0), 500), jax.random.fold_in(KEY(1), 500), SHAPE, 0.3)
  a = run(KEY(0), KEY(1))
  np.testing.assert_allclose(
    a, z_T / jnp.sqrt(ab500) + sigma * n500 / jnp.sqrt(ab0), rtol=1e-5, atol=1e-5
  )
  b, c = run(KEY(0), KEY(2)), run(KEY(3), KEY(1))
  centre, others = diffusion.centre_index(SHAPE[1]), diffusion.other_frame_indices(SHAPE[1])
  np.testing.assert_array_equal(a[:, centre], b[:, centre])
  assert float(jnp.abs(a[:, others] - b[:, others]).min()) > 0
  assert float(jnp.abs(a - c).min()) > 0  # a new base key changes every frame


def test_standard_mode_noise_ignores_the_base_key():
  zero = lambda z, t: jnp.zeros_like(z)
  s20 = diffusion.make_schedule("cosine", 20)
  run = fast_jit(
    lambda bk, rk: diffusion.ddpm_sample(zero, s20, SHAPE, bk, rk, noise_mode="standard")
  )
  np.testing.assert_array_equal(run(KEY(0), KEY(1)), run(KEY(9), KEY(1)))
  assert float(jnp.abs(run(KEY(0), KEY(1)) - run(KEY(0), KEY(2))).min()) > 0


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta_one_over_all_steps_is_ddpm(clip):
  """DDIM with eta = 1 and S = T is DDPM with the fixed-small variance (Song et al.),
  and both samplers key a step's noise by its timestep: the same keys, the same video."""
  s20 = diffusion.make_schedule("cosine", 20)
  eps_fn = lambda z, t: 0.8 * jnp.tanh(z) + 0.01 * t[:, None, None, None, None]
  ddim = fast_jit(
    lambda: diffusion.ddim_sample(
      eps_fn, s20, SHAPE, KEY(0), KEY(1), num_steps=20, eta=1.0, clip_x0=clip
    )
  )()
  ddpm = fast_jit(lambda: diffusion.ddpm_sample(eps_fn, s20, SHAPE, KEY(0), KEY(1), clip_x0=clip))()
  assert float(jnp.abs(ddpm).max()) > 0.5
  np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)


def test_sampler_compiles_once_per_shape():
  traces = []

  def eps_fn(z, t):
    traces.append(1)
    return 0.1 * z

  fn = fast_jit(lambda bk, rk: diffusion.ddim_sample(eps_fn, SCHEDULE, SHAPE, bk, rk, num_steps=10))
  fn(KEY(0), KEY(1))
  fn(KEY(2), KEY(3))
  assert len(traces) == 1 and fn._cache_size() == 1


def test_trajectory_has_one_estimate_per_step():
  x0, traj = fast_jit(
    lambda: diffusion.ddim_sample(
      oracle, SCHEDULE, SHAPE, KEY(0), KEY(1), num_steps=7, return_trajectory=True
    )
  )()
  assert traj.shape == (7,) + SHAPE
  np.testing.assert_allclose(traj, jnp.broadcast_to(X0, traj.shape), atol=1e-4)  # oracle
  np.testing.assert_array_equal(traj[-1], x0)  # last step: ab_s = 1, z = x0_hat


def test_guidance_is_one_batched_call():
  calls = []

  def eps_fn(z, t, cond):
    calls.append(z.shape[0])
    return z * cond["scale"][:, None, None, None, None] + t[:, None, None, None, None]

  z = jnp.ones(SHAPE)
  cond = {"scale": jnp.array([2.0, 3.0])}
  null = {"scale": jnp.array([0.5])}  # batch 1: broadcast to cond's batch
  guided = diffusion.classifier_free_guidance(eps_fn, cond, null, 3.0)
  out = jax.jit(guided)(z, jnp.array([10, 20]))
  assert calls == [2 * SHAPE[0]]
  eps_c = cond["scale"] + jnp.array([10.0, 20.0])
  eps_u = 0.5 + jnp.array([10.0, 20.0])
  np.testing.assert_allclose(out[:, 0, 0, 0, 0], eps_u + 3.0 * (eps_c - eps_u), rtol=1e-6)
  calls.clear()
  plain = diffusion.classifier_free_guidance(eps_fn, cond, null, 1.0)
  np.testing.assert_allclose(plain(z, jnp.array([1, 1]))[:, 0, 0, 0, 0], cond["scale"] + 1.0)
  assert calls == [SHAPE[0]]  # scale 1: no doubled batch
  with pytest.raises(ValueError, match="scale=.*Python number"):
    diffusion.classifier_free_guidance(eps_fn, cond, null, jnp.array(3.0))


def test_guidance_takes_the_variance_of_the_conditional_branch():
  def eps_fn(z, t, cond):
    return z * cond[:, None, None, None, None], jnp.broadcast_to(
      cond[:, None, None, None, None], z.shape
    )

  guided = diffusion.classifier_free_guidance(
    eps_fn, jnp.array([0.2, 0.4]), jnp.array([-0.9, -0.9]), 2.0
  )
  eps, var = guided(jnp.ones(SHAPE), jnp.array([5, 5]))
  np.testing.assert_allclose(
    eps[:, 0, 0, 0, 0], -0.9 + 2.0 * (jnp.array([0.2, 0.4]) + 0.9), rtol=1e-6
  )
  np.testing.assert_array_equal(var[:, 0, 0, 0, 0], np.float32([0.2, 0.4]))


BAD_CALLS = [
  (lambda f: diffusion.ddim_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), num_steps=0), "num_steps=0"),
  (
    lambda f: diffusion.ddim_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), num_steps=1001),
    "num_steps=1001",
  ),
  (lambda f: diffusion.ddim_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), eta=-1.0), "eta=-1.0"),
  (lambda f: diffusion.ddim_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), lam=2.0), "lam=2.0"),
  (
    lambda f: diffusion.ddim_sample(f, SCHEDULE, (2, 4, 4, 3), KEY(0), KEY(1)),
    "\\(B, N, H, W, C\\)",
  ),
  (lambda f: diffusion.ddim_sample(f, SCHEDULE, (2, 1, 4, 4, 3), KEY(0), KEY(1)), "N >= 2"),
  (
    lambda f: diffusion.ddim_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), noise_mode="iid"),
    "noise_mode='iid'",
  ),
  (
    lambda f: diffusion.ddpm_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), variance="learned"),
    "variance='learned'",
  ),
  (lambda f: diffusion.ddpm_sample(f, SCHEDULE, SHAPE, KEY(0), KEY(1), lam=-0.5), "lam=-0.5"),
]


@pytest.mark.parametrize("call,match", BAD_CALLS)
def test_bad_sampler_arguments_are_named_before_tracing(call, match):
  traced = []

  def eps_fn(z, t):
    traced.append(1)
    return oracle(z, t)

  with pytest.raises(ValueError, match=match):
    jax.jit(lambda: call(eps_fn))()
  assert not traced  # raised before the model was traced


def test_learned_range_needs_variance_values():
  with pytest.raises(ValueError, match="learned_range.*var_values"):  # at trace time
    fast_jit(
      lambda: diffusion.ddpm_sample(
        oracle,
        diffusion.make_schedule("cosine", 20),
        SHAPE,
        KEY(0),
        KEY(1),
        variance="learned_range",
      )
    )()
