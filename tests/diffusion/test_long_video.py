"""Long videos by replacement: exact overlaps, frame counts, base-noise rule, one compile,
memory independent of length."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion
from videofusion_jax.diffusion import noise_sharing as ns
from videofusion_jax.diffusion.long_video import (check_long_video, long_video_windows,
                                                  window_keys, window_step)

KEY = jax.random.key
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SCHEDULE = diffusion.make_schedule("cosine", 1000)
SHAPE = (2, 4, 4, 4, 3)      # window of N = 4 frames
OVERLAP = 2
STATIC = jnp.linspace(-0.8, 0.8, 2 * 16 * 3).reshape(2, 1, 4, 4, 3)


def oracle(z, t):
  """Exact noise for a static video (every frame = STATIC): DDIM lands on it."""
  ab = SCHEDULE.alphas_cumprod[t][:, None, None, None, None]
  return (z - jnp.sqrt(ab) * STATIC) / jnp.sqrt(1 - ab)


def copy_first(z, t):
  """A denoiser that predicts every frame to be the current estimate of frame 0 (its
  noisy value rescaled): it can only make frames agree with what frame 0 holds."""
  ab = SCHEDULE.alphas_cumprod[t][:, None, None, None, None]
  x0 = jnp.broadcast_to(z[:, :1] / jnp.sqrt(ab), z.shape)
  return (z - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)


def make_step(eps_fn, **kw):
  return fast_jit(functools.partial(window_step, eps_fn, SCHEDULE, SHAPE, lam=0.5,
                                    num_steps=6, **kw))


ORACLE_STEP = make_step(oracle)
COPY_STEP = make_step(copy_first)


def test_check_long_video_counts_windows_and_names_bad_lengths():
  assert check_long_video(4, 4, 2) == 1
  assert check_long_video(512, 16, 8) == 63
  assert check_long_video(10, 4, 2) == 4
  with pytest.raises(ValueError, match=r"num_frames=11.*stride=2 \(e.g. 10 or 12\)"):
    check_long_video(11, 4, 2)
  with pytest.raises(ValueError, match="num_frames=3"):
    check_long_video(3, 4, 2)
  with pytest.raises(ValueError, match="sample.overlap=4; expected 1 <= overlap < window=4"):
    check_long_video(8, 4, 4)


def collect(step, num_frames, fixed_base=True, base=KEY(0), residual=KEY(1)):
  chunks = [np.asarray(f) for _, f in long_video_windows(
      step, num_frames, SHAPE, OVERLAP, base, residual, fixed_base=fixed_base)]
  return chunks


def test_oracle_long_video_has_the_requested_frames_and_known_overlaps():
  chunks = collect(ORACLE_STEP, 10)
  assert [c.shape[1] for c in chunks] == [4, 2, 2, 2]
  video = np.concatenate(chunks, axis=1)
  assert video.shape == (2, 10, 4, 4, 3)
  np.testing.assert_allclose(video, np.broadcast_to(STATIC, video.shape), atol=1e-5)
  assert ORACLE_STEP._cache_size() == 1   # one compile for every window


def test_replaced_frames_equal_the_known_frames_exactly():
  known = jax.random.uniform(KEY(5), (2, OVERLAP, 4, 4, 3), minval=-1, maxval=1)
  known_eps = jax.random.normal(KEY(6), known.shape)
  for step in (ORACLE_STEP, COPY_STEP):
    video, eps = step(KEY(0), KEY(1), known, known_eps, jnp.asarray(True))
    np.testing.assert_array_equal(video[:, :OVERLAP], known)
    np.testing.assert_array_equal(eps[:, :OVERLAP], known_eps)
  # Without known frames the step is plain DDIM with the same keys.
  plain = fast_jit(lambda: diffusion.ddim_sample(oracle, SCHEDULE, SHAPE, KEY(0), KEY(1),
                                                 lam=0.5, num_steps=6))()
  video, _ = ORACLE_STEP(KEY(0), KEY(1), known, known_eps, jnp.asarray(False))
  np.testing.assert_allclose(video, plain, atol=1e-6)


def test_consecutive_windows_agree_on_their_overlap():
  """With a denoiser that can only copy frame 0, the new frames of every later window
  follow the known frames (replacement conditions them); the first window's frames
  are the only free ones."""
  video = np.concatenate(collect(COPY_STEP, 10), axis=1)
  first = video[:, :4]
  later = video[:, 4:]
  # Every later frame continues the overlap it was conditioned on.
  ref = np.broadcast_to(first[:, 2:3], later.shape)
  assert np.abs(later - ref).max() < 0.05
  # Unconditioned, the same keys give other frames: the agreement is the replacement's.
  free, _ = COPY_STEP(*window_keys(KEY(0), KEY(1), 1), jnp.zeros((2, 2, 4, 4, 3)),
                      jnp.zeros((2, 2, 4, 4, 3)), jnp.asarray(False))
  assert np.abs(np.asarray(free[:, 2:]) - ref[:, :2]).mean() > 0.1


def test_base_noise_is_fixed_across_windows_only_when_asked():
  shape = (1,) + SHAPE[1:]
  parts = fast_jit(lambda kb, kr: diffusion.decomposed_noise_parts(kb, kr, shape))
  for base, residual in ((KEY(0), KEY(1)), (ns.video_keys(0, 0, 1)[0], KEY(1))):
    fixed = [parts(*window_keys(base, residual, w, True)) for w in range(3)]
    fresh = [parts(*window_keys(base, residual, w, False)) for w in range(3)]
    for w in (1, 2):
      np.testing.assert_array_equal(fixed[w][0], fixed[0][0])          # same b
      assert not np.array_equal(fixed[w][1], fixed[0][1])              # new r
      assert not np.array_equal(fresh[w][0], fresh[0][0])              # new b
      np.testing.assert_array_equal(fresh[w][1], fixed[w][1])          # same r either way
  # Per-video keys fold in the window per video.
  keys = ns.video_keys(3, 0, 2)
  kb, kr = window_keys(keys, keys, 2, fixed_base=False)
  assert kb.shape == (2,)
  np.testing.assert_array_equal(jax.random.key_data(kb[1]),
                                jax.random.key_data(jax.random.fold_in(keys[1], 2)))


def test_first_window_is_the_same_with_or_without_fixed_base():
  a = np.concatenate(collect(COPY_STEP, 8, fixed_base=True), axis=1)
  b = np.concatenate(collect(COPY_STEP, 8, fixed_base=False), axis=1)
  np.testing.assert_array_equal(a[:, :4], b[:, :4])  # window 0 identical


def test_memory_does_not_grow_with_length():
  def peak_live_bytes(num_frames):
    before = sum(x.nbytes for x in jax.live_arrays())
    peak = 0
    for _, frames in long_video_windows(ORACLE_STEP, num_frames, SHAPE, OVERLAP, KEY(0),
                                        KEY(1)):
      del frames
      peak = max(peak, sum(x.nbytes for x in jax.live_arrays()) - before)
    return peak
  short, long = peak_live_bytes(6), peak_live_bytes(30)
  assert short == long
  # What stays alive is about one window and its noise, not the video.
  assert long <= 4 * np.prod(SHAPE) * 4
