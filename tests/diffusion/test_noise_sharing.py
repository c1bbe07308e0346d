"""Who shares which noise: per-video keys, the Weizmann grouping rule, seed grids."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion
from videofusion_jax.diffusion import noise_sharing as ns
from videofusion_jax.sampling.controls import grid_keys

KEY = jax.random.key
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SCHEDULE = diffusion.make_schedule("cosine", 1000)


def test_grouped_noise_shares_base_by_identity_and_residual_by_action():
  # 2 identities x 2 actions, plus a clip repeating (identity 1, action 0).
  ident = jnp.array([0, 0, 1, 1, 1])
  action = jnp.array([0, 1, 0, 1, 0])
  shape, lam = (5, 4, 3, 3, 2), 0.9
  parts = fast_jit(ns.grouped_noise_parts, static_argnums=2)
  b, r = parts(KEY(0), KEY(1), shape, ident, action)
  assert b.shape == (5, 1, 3, 3, 2) and r.shape == shape
  for i in range(5):
    for j in range(5):
      same_b = bool(jnp.all(b[i] == b[j]))
      same_r = bool(jnp.all(r[i] == r[j]))
      assert same_b == (int(ident[i]) == int(ident[j])), (i, j)
      assert same_r == (int(action[i]) == int(action[j])), (i, j)
  eps = fast_jit(ns.grouped_noise, static_argnums=(2, 3))(KEY(0), KEY(1), shape, lam, ident, action)
  np.testing.assert_allclose(
    eps,
    diffusion.compose_noise(  # jit may fuse into FMAs
      b, r, diffusion.frame_lambdas(4, lam)
    ),
    atol=1e-6,
  )
  c = diffusion.centre_index(4)
  # eps[c] = b: the centre frames of one identity agree bitwise, across actions.
  np.testing.assert_array_equal(eps[0, c], eps[1, c])
  assert not np.array_equal(eps[0, c], eps[2, c])
  # Clips with the same identity and action have the same noise; others differ in
  # every non-centre frame.
  np.testing.assert_array_equal(eps[2], eps[4])
  assert np.all(np.abs(eps[0, 0] - eps[1, 0]) > 0)


def test_grouped_noise_is_decomposed_noise_in_distribution():
  # Over many identities/actions each clip's noise keeps Eq. 7's statistics.
  n = 2048
  ids = jnp.arange(n)
  eps = fast_jit(ns.grouped_noise, static_argnums=(2, 3))(
    KEY(3), KEY(4), (n, 3, 2, 2, 1), 0.9, ids, ids[::-1]
  )
  flat = np.asarray(eps).reshape(n, 3, -1).transpose(1, 0, 2).reshape(3, -1)
  tol = 5 / np.sqrt(flat.shape[1])
  np.testing.assert_allclose(flat.mean(1), 0, atol=tol)
  np.testing.assert_allclose(flat.std(1), 1, atol=3 * tol)
  np.testing.assert_allclose(np.corrcoef(flat)[0, 2], 0.9, atol=tol)


def test_training_noise_validates():
  shape = (2, 4, 2, 2, 1)
  with pytest.raises(ValueError, match="identity_ids has shape"):
    ns.grouped_noise(KEY(0), KEY(1), shape, 0.5, jnp.zeros(3, jnp.int32), jnp.zeros(2))
  with pytest.raises(ValueError, match="noise_mode='standard'.*decomposed"):
    ns.training_noise(
      "standard", KEY(0), KEY(1), shape, 0.5, (jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32))
    )
  np.testing.assert_array_equal(
    ns.training_noise("decomposed", KEY(0), KEY(1), shape, 0.5),
    diffusion.sample_noise("decomposed", KEY(0), KEY(1), shape, 0.5),
  )


def test_video_k_has_the_same_noise_whatever_the_batch_size():
  draw = fast_jit(ns.draw_noise, static_argnums=(0, 3, 4))
  shape = (1, 4, 3, 3, 2)
  small = draw("decomposed", ns.video_keys(7, 0, 2), ns.video_keys(8, 0, 2), (2,) + shape[1:], 0.5)
  large = draw("decomposed", ns.video_keys(7, 0, 5), ns.video_keys(8, 0, 5), (5,) + shape[1:], 0.5)
  offset = draw("decomposed", ns.video_keys(7, 1, 3), ns.video_keys(8, 1, 3), (3,) + shape[1:], 0.5)
  np.testing.assert_array_equal(small, large[:2])
  np.testing.assert_array_equal(offset, large[1:4])
  # ... and it is what one video alone gets from its own keys.
  alone = diffusion.sample_noise(
    "decomposed", jax.random.fold_in(KEY(7), 3), jax.random.fold_in(KEY(8), 3), shape, 0.5
  )
  np.testing.assert_allclose(alone[0], large[3], atol=1e-6)  # eager vs jit: FMA rounding
  # A single key still means one draw for the whole batch (the old behaviour).
  np.testing.assert_allclose(
    draw("decomposed", KEY(1), KEY(2), (2,) + shape[1:], 0.5),
    diffusion.sample_noise("decomposed", KEY(1), KEY(2), (2,) + shape[1:], 0.5),
    atol=1e-6,
  )
  with pytest.raises(ValueError, match=r"base_keys has shape \(2,\); expected \(5,\)"):
    ns.per_video_noise(
      "decomposed", ns.video_keys(0, 0, 2), ns.video_keys(0, 0, 5), (5,) + shape[1:], 0.5
    )


def test_samplers_take_per_video_keys_independent_of_batch():
  shape = (3, 4, 2, 2, 1)
  target = jnp.linspace(-0.8, 0.8, 16).reshape(1, 4, 2, 2, 1)

  def eps_fn(z, t):  # a contracting toy denoiser (x0_hat = 0.5 * target + 0.1 * z)
    ab = SCHEDULE.alphas_cumprod[t][:, None, None, None, None]
    x0 = 0.5 * target + 0.1 * z
    return (z - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)

  run = fast_jit(
    lambda kb, kr, n: diffusion.ddim_sample(
      eps_fn, SCHEDULE, (n,) + shape[1:], kb, kr, num_steps=4, eta=1.0
    ),
    static_argnums=2,
  )
  three = run(ns.video_keys(0, 0, 3), ns.video_keys(1, 0, 3), 3)
  two = run(ns.video_keys(0, 1, 2), ns.video_keys(1, 1, 2), 2)
  np.testing.assert_allclose(two, three[1:], atol=1e-6)
  ddpm = fast_jit(
    lambda kb, kr: diffusion.ddpm_sample(
      eps_fn, diffusion.make_schedule("cosine", 8), shape, kb, kr
    )
  )
  a = ddpm(ns.video_keys(0, 0, 3), ns.video_keys(1, 0, 3))
  assert np.all(np.isfinite(a)) and not np.allclose(a[0], a[1])


def test_seed_grid_keys_share_base_or_residual_noise():
  shape = (3, 4, 2, 2, 1)
  parts = fast_jit(
    lambda kb, kr: jax.vmap(lambda b, r: diffusion.decomposed_noise_parts(b, r, (1,) + shape[1:]))(
      kb, kr
    )
  )
  kb, kr, names = grid_keys(5, 6, 3, "residual")
  b, r = parts(kb, kr)
  assert names == ["grid_residual_b0_r0", "grid_residual_b0_r1", "grid_residual_b0_r2"]
  assert np.array_equal(b[0], b[1]) and np.array_equal(b[0], b[2])
  assert not np.array_equal(r[0], r[1]) and not np.array_equal(r[1], r[2])
  kb, kr, _ = grid_keys(5, 6, 3, "base")
  b2, r2 = parts(kb, kr)
  assert np.array_equal(r2[0], r2[2]) and not np.array_equal(b2[0], b2[1])
  np.testing.assert_array_equal(b2[0], b[0])  # video (0, 0) is the same in both rows
  np.testing.assert_array_equal(r2[0], r[0])
  kb, kr, names = grid_keys(5, 6, 2, "both")
  assert names == ["grid_both_b0_r0", "grid_both_b0_r1", "grid_both_b1_r0", "grid_both_b1_r1"]
  with pytest.raises(ValueError, match="sample.vary='motion'"):
    grid_keys(0, 1, 2, "motion")


def test_same_base_seed_same_base_trajectory_different_residual_frames():
  """The issue's check: the base generator's first prediction b_hat (from the centre
  frame, which carries only the base noise) is identical for two residual seeds, and
  the non-centre frames differ."""
  shape = (2, 4, 2, 2, 1)
  c = diffusion.centre_index(4)

  def eps_fn(z, t):  # toy generators: the centre's eps is a function of the centre only
    b_hat = z[:, c] * 0.3
    ab = SCHEDULE.alphas_cumprod[t][:, None, None, None, None]
    return diffusion.compose_eps(b_hat, 0.3 * z, diffusion.frame_lambdas(4, 0.5)) * (1 - ab)

  run = fast_jit(
    lambda kb, kr: diffusion.ddim_sample(
      eps_fn, SCHEDULE, shape, kb, kr, num_steps=3, return_trajectory=True
    )
  )
  z_t = fast_jit(lambda kb, kr: ns.draw_noise("decomposed", kb, kr, shape, 0.5))
  kb, kr1, _ = grid_keys(0, 1, 2, "residual")
  kr2 = ns.video_keys(9, 0, 2)
  # The base generator's first input, z_T's centre frame, is the base noise alone.
  np.testing.assert_array_equal(z_t(kb, kr1)[:, c], z_t(kb, kr2)[:, c])
  (out_a, traj_a), (out_b, traj_b) = run(kb, kr1), run(kb, kr2)
  np.testing.assert_array_equal(traj_a[:, :, c], traj_b[:, :, c])  # every step's estimate
  np.testing.assert_array_equal(out_a[:, c], out_b[:, c])
  assert np.abs(np.asarray(out_a[:, 0]) - np.asarray(out_b[:, 0])).mean() > 0.1
