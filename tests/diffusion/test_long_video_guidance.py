"""Long videos over an exact denoiser of temporally correlated videos: what the
replacement method loses at overlap window - 1, and reconstruction guidance keeping
every later window like the first at every overlap (issue 32's overlap = N - 1 defect).
On trained models guidance did not stop the drift (diffusion/long_video.py's docstring
has the numbers and the trained model's own mechanism): this pins the method's part.

The videos: every pixel an independent stationary AR(1) sequence over frames,
x ~ N(0, Sigma), Sigma_ij = S2 rho^|i - j|. Under the decomposed noise (Eq. 7), eps has
covariance C_ij = sqrt(lam_i lam_j) (1 on the diagonal), so z_t = sqrt(ab) x +
sqrt(1 - ab) eps is Gaussian and the MMSE noise prediction, what a perfectly trained
VideoFusion predicts (its eps_hat estimates this eps, Eq. 13-14), is linear per pixel:
E[eps | z_t] = sqrt(1 - ab) C (ab Sigma + (1 - ab) C)^-1 z_t.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion
from videofusion_jax.diffusion.long_video import long_video_windows, window_step

KEY = jax.random.key
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SCHEDULE = diffusion.make_schedule("cosine", 1000)
N, LAM, S2, RHO = 4, 0.5, 0.09, 0.9  # S = 0.3: x0 is almost never clipped
SHAPE = (2, N, 8, 8, 3)  # 384 independent pixel sequences per video
STEPS, WINDOWS, GUIDANCE = 20, 16, 2.0
BOUND = 1.6  # later windows / the first (the issue asks 2x of a trained model)


def _eps_matrices(noise_cov):
  idx = np.arange(N)
  sigma = S2 * RHO ** np.abs(idx[:, None] - idx[None])
  ab = np.asarray(SCHEDULE.alphas_cumprod, np.float64)
  return jnp.asarray(
    np.stack(
      [np.sqrt(1 - a) * noise_cov @ np.linalg.inv(a * sigma + (1 - a) * noise_cov) for a in ab]
    ),
    jnp.float32,
  )


def decomposed_noise_cov():
  lams = np.asarray(diffusion.frame_lambdas(N, LAM), np.float64)
  cov = np.sqrt(lams[:, None] * lams[None])
  np.fill_diagonal(cov, 1.0)
  return cov


EPS_MATRICES = {
  "decomposed": _eps_matrices(decomposed_noise_cov()),
  "standard": _eps_matrices(np.eye(N)),
}


def exact_eps(noise_mode):
  matrices = EPS_MATRICES[noise_mode]

  def eps_fn(z, t):  # (B, N, H, W, C), (B,) -> E[eps | z_t], frames mixed per pixel
    return jnp.einsum("bij,bjhwc->bihwc", matrices[t], z)

  return eps_fn


@functools.lru_cache(maxsize=None)
def step_fn(noise_mode, eta, guidance):
  return fast_jit(
    functools.partial(
      window_step,
      exact_eps(noise_mode),
      SCHEDULE,
      SHAPE,
      lam=LAM,
      num_steps=STEPS,
      eta=eta,
      clip_x0=False,
      noise_mode=noise_mode,
      guidance=guidance,
    )
  )


def window_stats(overlap, eta=1.0, guidance=0.0, noise_mode="decomposed"):
  """(windows, 3): per window, the pixel variance / S2, the lag-1 correlation between
  its first new frame and the frame before it, and the mean |frame change| over all of
  its frames / the data's."""
  length = N + (WINDOWS - 1) * (N - overlap)
  video = np.concatenate(
    [
      np.asarray(f)
      for _, f in long_video_windows(
        step_fn(noise_mode, eta, guidance),
        length,
        SHAPE,
        overlap,
        KEY(0),
        KEY(1),
        recentre=False,  # the layout these numbers were measured in
      )
    ],
    axis=1,
  )
  data_change = np.sqrt(2 * S2 * (1 - RHO)) * np.sqrt(2 / np.pi)  # E|x_{i+1} - x_i|
  rows = []
  for w in range(WINDOWS):
    x = video[:, w * (N - overlap) : w * (N - overlap) + N]
    seam = overlap if w else 1  # window 0: its first pair of frames
    a, b = x[:, seam - 1].ravel(), x[:, seam].ravel()
    rows.append(
      (x.var() / S2, np.corrcoef(a, b)[0, 1], np.abs(np.diff(x, axis=1)).mean() / data_change)
    )
  return np.array(rows)


@pytest.mark.parametrize("noise_mode", ["decomposed", "standard"])
def test_plain_replacement_loses_the_frame_correlation_at_overlap_window_minus_1(noise_mode):
  """The defect, with a perfect denoiser: at overlap N - 1 every frame after window 0 is
  made by one replacement step from the frames before it, and the replacement method
  (known frames noised and put back, the new frame denoised from the joint z_t) does not
  sample the conditional p(x_new | x_known): the new frame follows its predecessor with
  a lag-1 correlation below the data's 0.9 (measured 0.77-0.82 decomposed, 0.5-0.6
  standard noise; 0.70 in windows of 8), and the window's frame change grows to 1.8-2x
  the first window's. Not the decomposition (standard noise loses more), not a noise rule:
  the method's inexact conditional. A trained model then sees known frames less
  coherent than its training clips, its new frames come out worse still, and those
  become the next windows' known frames: on the demo checkpoint the frame change grew
  4.6 -> 29.5/255 over 29 windows, into noise (README "Long videos")."""
  stats = window_stats(N - 1, noise_mode=noise_mode)
  late = stats[WINDOWS // 2 :]
  assert abs(stats[0, 1] - RHO) < 0.05, stats[0]  # window 0: the data's
  assert late[:, 1].mean() < RHO - 0.06, late[:, 1]  # later seams: looser
  assert late[:, 2].mean() > BOUND * stats[0, 2], stats[:, 2]


@pytest.mark.parametrize("eta", [1.0, 0.0])
@pytest.mark.parametrize("overlap", [1, N // 2, N - 1])
def test_reconstruction_guidance_keeps_later_windows_like_the_first(overlap, eta):
  """With guidance (weight 2) every later window keeps the first window's frame change
  and pixel variance within BOUND (measured within 1.45x; unguided at N - 1: 1.8x), at
  overlap 1, N / 2 and N - 1, and at N - 1, where every frame is made across a seam,
  nearly the data's lag-1 correlation there (later windows' mean 0.89 at eta 1, 0.83
  at eta 0)."""
  stats = window_stats(overlap, eta, GUIDANCE)
  later = stats[1:]
  for k, name in ((0, "variance"), (2, "frame change")):
    ratio = later[:, k] / stats[0, k]
    assert np.all((ratio < BOUND) & (ratio > 1 / BOUND)), (overlap, name, ratio)
  if overlap == N - 1:  # unguided: 0.80 (eta 1), 0.74 (eta 0)
    assert later[:, 1].mean() > RHO - 0.08, later[:, 1]


def test_guidance_leaves_the_known_frames_and_an_unconditioned_window_alone():
  """The known frames still equal the earlier window's exactly, and a window without
  known frames (the first) is the plain sampler's, bit for bit."""
  known = jax.random.normal(KEY(4), (2, N - 1) + SHAPE[2:]) * np.sqrt(S2)
  guided, plain = step_fn("decomposed", 1.0, GUIDANCE), step_fn("decomposed", 1.0, 0.0)
  video = guided(KEY(0), KEY(1), known, jnp.asarray(True))
  np.testing.assert_array_equal(video[:, : N - 1], known)
  assert not np.allclose(video, plain(KEY(0), KEY(1), known, jnp.asarray(True)))
  np.testing.assert_array_equal(
    guided(KEY(0), KEY(1), known, jnp.asarray(False)),
    plain(KEY(0), KEY(1), known, jnp.asarray(False)),
  )
  with pytest.raises(ValueError, match="long_video_guidance=-1.0; expected >= 0"):
    window_step(
      exact_eps("decomposed"), SCHEDULE, SHAPE, KEY(0), KEY(1), known, True, guidance=-1.0
    )
