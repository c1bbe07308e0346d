"""Long videos by the replacement method with fixed base noise (paper Sec 4.6).

A model makes windows of N frames. A video of L frames is made window by window, each
new window overlapping the previous one by O frames (stride S = N - O, so
L = N + k S). In every window after the first, the O overlapping frames are *known*
(the end of the previous window): at every denoising step they are replaced by the
known frames forward-noised to that step's level, z[:O] = sqrt(ab) x_known +
sqrt(1 - ab) eps_known (Ho et al., VDM Sec 3.1), so the new frames are generated in
agreement with them; after the last step (ab = 1) they equal the known frames exactly.

Noise rule (what VideoFusion adds): window w's noise is Eq. 7 with the base noise `b`
drawn from `base_key` for every window (`fixed_base=True`: one content for the whole
video) or from `fold_in(base_key, w)` (`fixed_base=False`: the baseline), and residual
noise from `fold_in(residual_key, w)` (window 0 from the keys themselves, so window 0
is exactly `ddim_sample`'s video). The known frames keep the noise they were generated
with (`eps_known` is carried from window to window), so with a deterministic DDIM their
noisy versions are the latents the previous window had at the same step.

`window_step` is one `lax.scan` over the DDIM steps for one window with static shapes:
jit it once and call it for every window (`use_known=False` for the first, whose
replacement is then a no-op), from a Python loop that streams the new frames out.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import check_lam, check_noise_mode
from videofusion_jax.diffusion.noise_sharing import draw_noise, fold_in
from videofusion_jax.diffusion.samplers import _split_output, ddim_step
from videofusion_jax.diffusion.schedules import Schedule, ddim_timesteps


def check_long_video(num_frames: int, window: int, overlap: int) -> int:
  """Validate a long-video request; return the number of windows.

  Needs 1 <= overlap < window and num_frames = window + k (window - overlap), k >= 0.
  """
  if window < 2:
    raise ValueError(f"window={window}; expected a model window of >= 2 frames")
  if not 1 <= overlap < window:
    raise ValueError(f"sample.overlap={overlap}; expected 1 <= overlap < window={window}")
  stride = window - overlap
  if num_frames < window or (num_frames - window) % stride:
    lo = window + max(0, (num_frames - window) // stride) * stride
    raise ValueError(
        f"num_frames={num_frames}; a long video is window + k * stride frames with "
        f"window={window}, overlap={overlap}, stride={stride} (e.g. {lo} or {lo + stride})")
  return 1 + (num_frames - window) // stride


def window_keys(base_key, residual_key, window_index: int, fixed_base: bool = True):
  """(base key, residual key) of window `window_index` (keys may be (B,) per video)."""
  if window_index == 0:
    return base_key, residual_key
  base = base_key if fixed_base else fold_in(base_key, window_index)
  return base, fold_in(residual_key, window_index)


def window_step(eps_fn: Callable, schedule: Schedule, shape, base_key, residual_key,
                known, known_eps, use_known, *, lam: float = 0.5, num_steps: int = 50,
                eta: float = 0.0, clip_x0: bool = True, noise_mode: str = "decomposed"):
  """DDIM over one window of `shape` (B, N, H, W, C), the first O frames replaced.

  known: (B, O, H, W, C) clean frames; known_eps: (B, O, H, W, C) their noise; use_known:
  bool scalar (False: an unconditioned window, e.g. the first). base_key, residual_key:
  this window's keys (`window_keys`). Returns (video (B, N, H, W, C), eps (B, N, H, W, C)):
  eps is the noise the window was generated with (its overlap frames = known_eps), whose
  last O frames are the next window's known_eps.
  """
  if len(shape) != 5 or shape[1] < 2:
    raise ValueError(f"shape={tuple(shape)}; expected a window shape (B, N, H, W, C)")
  check_lam(lam)
  check_noise_mode(noise_mode)
  o = known.shape[1]
  want = (shape[0], o) + tuple(shape[2:])
  if not 1 <= o < shape[1] or tuple(known.shape) != want or tuple(known_eps.shape) != want:
    raise ValueError(f"known {tuple(known.shape)} / known_eps {tuple(known_eps.shape)}; "
                     f"expected (B, O, H, W, C) = {want} with 1 <= O < N={shape[1]}")
  ts = ddim_timesteps(schedule.num_timesteps, num_steps)
  ab = schedule.alphas_cumprod
  ab_t = ab[ts]
  ab_s = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])
  use_known = jnp.asarray(use_known, bool)

  eps = draw_noise(noise_mode, base_key, residual_key, shape, lam)
  eps = eps.at[:, :o].set(jnp.where(use_known, known_eps, eps[:, :o]))

  def replace(z, ab_level):
    noisy = jnp.sqrt(ab_level) * known + jnp.sqrt(1.0 - ab_level) * known_eps
    return z.at[:, :o].set(jnp.where(use_known, noisy, z[:, :o]))

  def body(z, xs):
    t, a_t, a_s = xs
    out, _ = _split_output(eps_fn(z, jnp.full((shape[0],), t, jnp.int32)))
    noise = (draw_noise(noise_mode, fold_in(base_key, t), fold_in(residual_key, t), shape,
                        lam) if eta > 0 else None)
    z, _ = ddim_step(z, out, a_t, a_s, eta=eta, noise=noise, clip_x0=clip_x0)
    return replace(z, a_s), None

  z = replace(eps, ab_t[0])
  z, _ = jax.lax.scan(body, z, (jnp.asarray(ts), ab_t, ab_s))
  return z, eps


def long_video_windows(step_fn: Callable, num_frames: int, window_shape, overlap: int,
                       base_key, residual_key, *, fixed_base: bool = True):
  """Yield (window index, new frames (B, n, H, W, C)) until `num_frames` frames are out.

  step_fn(base_key, residual_key, known, known_eps, use_known) -> (video, eps) is a
  jitted `window_step` (same shapes every call: one compile). The first window yields
  all N frames, each later one its N - O new frames; only the last window's overlap is
  kept between calls, so memory does not grow with `num_frames`.
  """
  b, n = window_shape[0], window_shape[1]
  num_windows = check_long_video(num_frames, n, overlap)
  overlap_shape = (b, overlap) + tuple(window_shape[2:])
  known = jnp.zeros(overlap_shape, jnp.float32)
  known_eps = jnp.zeros(overlap_shape, jnp.float32)
  for w in range(num_windows):
    kb, kr = window_keys(base_key, residual_key, w, fixed_base)
    video, eps = step_fn(kb, kr, known, known_eps, jnp.asarray(w > 0))
    known, known_eps = video[:, n - overlap:], eps[:, n - overlap:]
    yield w, (video if w == 0 else video[:, overlap:])
