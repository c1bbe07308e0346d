"""Long videos by the replacement method with fixed base noise (paper Sec 4.6).

A model makes windows of N frames. A video of L frames is made window by window, each
new window overlapping the previous one by O frames (stride S = N - O, so
L = N + k S). In every window after the first, the O overlapping frames are *known*
(the end of the previous window) and replaced at every denoising step by the known
frames noised to that step's level (Ho et al., VDM Sec 3.1), so the new frames are
generated in agreement with them: the known frames take the same DDIM step as the
others with their true x0, a draw from q(z_s | z_t, x0 = x_known); after the last step
(ab = 1) they equal the known frames exactly.

Noise rule (what VideoFusion adds): window w's noise is Eq. 7 with the base noise `b`
drawn from `base_key` for every window (`fixed_base=True`: one content for the whole
video) or from `fold_in(base_key, w)` (`fixed_base=False`: the baseline), and residual
noise from `fold_in(residual_key, w)` (window 0 from the keys themselves, so window 0
is exactly `ddim_sample`'s video). The known frames' noise is part of it: they start
from this window's draw eps[:O], and each step (eta > 0) mixes the step's noise into
them as into every other frame. The decomposed denoiser reads the centre frame
c = (N - 1) // 2's noise as the base noise of all frames and removes it from the others
(Eq. 12), so all N frames must hold one decomposed noise at every step. A known centre
frame (O > c, the default O = N / 2 included) is thus noised with the window's base
noise like any centre frame, and the base generator denoises it back to the known frame.
(Issue 32: the known frames were noised with the noise they were generated with, kept
for the whole window. The centre then held sqrt(lam) b + sqrt(1 - lam) r instead of b,
or a noise the eta > 0 steps had moved the other frames away from, so the base
prediction did not match them and Eq. 12 put noise into every later window.)

Overlaps past the centre (O > c + 1, e.g. O = N - 1: one new frame per window): the
window is re-centred (`long_video_windows(recentre=True)`, the default; issue 32).
Why: in VideoFusion a frame other than the centre is denoised from its own z_t and the
centre frame alone. The residual generator runs frame by frame (its context is the
clean centre frame, or the base's estimate of it) and the base generator sees only
the centre, so the other known frames reach a new frame only through the centre. Laid
out plainly (the O known frames at 0..O-1), at O = N - 1 the centre is the known frame
N - 1 - c back from the new one (4 at N = 8): every new frame continues the frame 4
back, four interleaved chains that wander apart. On the demo checkpoint (eta 1, 4
videos, 20 windows; benchmarks/long_video_overlap.py, numbers in benchmarks/RESULTS.md)
the frame change grew 4.9 -> 18.0/255 and the last window's mean |x_t - x_(t-k)| was
18.0 16.9 19.5 8.1 17.7 18.2 23.0 for k = 1..7. The re-centred window holds only the
last c + 1 frames put out, at 0..c, so that the last of them is the centre, makes
c + 1..N - 1 and keeps the first N - O of them: one chain, every new frame made next to
the centre as at the default overlap (O <= c + 1 is laid out as before, bit for bit).
Demo, overlap 7: 4.9 then 4.2-4.9 over 29 windows, |x_t - x_(t-k)| 4.3 4.8 5.4 5.9 6.3
7.2 7.7 (rising with k, as in a video); tests/test_user_flow.py's model (window 4,
overlap 3): 12.5 then 12.3-15.0 over 10 windows (plain: 12.6 -> 39.7).
The cost: known frames before the last c + 1 are not in the window. A denoiser whose
frames see each other would use them; an exact AR(1) denoiser (windows of 4) follows
its known neighbour more loosely re-centred (later lag-1 correlation 0.67 against 0.80
plain, data 0.9), bounded either way (tests/diffusion/test_long_video_recentre.py pins
both sides, and the method's own error below).
Left as it is, the method's own error: the replacement method does not sample
p(x_new | x_known). The known frames reach the new ones only through their noised
copies z_t, which hold little of them at high noise, so even with an exact denoiser a
new frame follows its known neighbour more loosely than the data's frames follow each
other (AR(1) pixels, lag-1 0.9, windows of 8, 25 steps, overlap 7: 0.70-0.74, frame
change ~2x the first window's, bounded; standard independent noise 0.45-0.58).
Tried and removed (options of `window_step` at commit 70abe14: `guidance=`,
`release_steps=`, `known_lag=`; measured on the demo, overlap 7, 20 windows, eta 1,
frame change first -> last window; plain 4.9 -> 18.0): reconstruction guidance (Ho et
al. 2022 Sec 3.1), which fixes the exact denoiser's part (lag-1 0.86-0.93) but not the
trained model's (weight 2: 5.0 -> 19.6 over 15 windows, plain 5.0 -> 15.1, at several
times the cost); the last 5 of 25 steps without replacement (release 5, the model
harmonising the known frames with the new one): 4.9 -> 14.3, pixel std +16%; the known
frames held 3 steps noisier (lag 3, noise augmentation): 4.9 -> 13.1. Both keep the
centre 4 back, hence the chains; at the default overlap release made windows worse
(1.27x the first's, std +23%, plain 1.13x), lag did not (0.95x). RePaint-style
resampling (3 passes per step) did less than guidance.

`window_step` is one `lax.scan` over the DDIM steps for one window with static shapes:
jit it once and call it for every window (`use_known=False` for the first, whose
replacement is then a no-op), from a Python loop that streams the new frames out.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from videofusion_jax.diffusion.decomposition import centre_index, check_lam, check_noise_mode
from videofusion_jax.diffusion.noise_sharing import draw_noise, fold_in
from videofusion_jax.diffusion.samplers import _split_output, ddim_step, ddim_update
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
      f"window={window}, overlap={overlap}, stride={stride} (e.g. {lo} or {lo + stride})"
    )
  return 1 + (num_frames - window) // stride


def window_keys(base_key, residual_key, window_index: int, fixed_base: bool = True):
  """(base key, residual key) of window `window_index` (keys may be (B,) per video)."""
  if window_index == 0:
    return base_key, residual_key
  base = base_key if fixed_base else fold_in(base_key, window_index)
  return base, fold_in(residual_key, window_index)


def window_step(
  eps_fn: Callable,
  schedule: Schedule,
  shape,
  base_key,
  residual_key,
  known,
  use_known,
  *,
  lam: float = 0.5,
  num_steps: int = 50,
  eta: float = 0.0,
  clip_x0: bool = True,
  noise_mode: str = "decomposed",
):
  """DDIM over one window of `shape` (B, N, H, W, C), the first O frames replaced.

  known: (B, O, H, W, C) clean frames; use_known: bool scalar (False: an unconditioned
  window, e.g. the first, which is then `ddim_sample`'s video). base_key, residual_key:
  this window's keys (`window_keys`); their noise (Eq. 7 over all N frames, and the
  step noise when eta > 0) noises the known frames too. Returns the window's video
  (B, N, H, W, C), whose first O frames equal `known` exactly when `use_known`.
  """
  if len(shape) != 5 or shape[1] < 2:
    raise ValueError(f"shape={tuple(shape)}; expected a window shape (B, N, H, W, C)")
  check_lam(lam)
  check_noise_mode(noise_mode)
  o = known.shape[1]
  want = (shape[0], o) + tuple(shape[2:])
  if not 1 <= o < shape[1] or tuple(known.shape) != want:
    raise ValueError(
      f"known {tuple(known.shape)}; expected (B, O, H, W, C) = {want} with 1 <= O < N={shape[1]}"
    )
  ts = ddim_timesteps(schedule.num_timesteps, num_steps)
  ab = schedule.alphas_cumprod
  ab_t = ab[ts]
  ab_s = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])
  use_known = jnp.asarray(use_known, bool)
  eps = draw_noise(noise_mode, base_key, residual_key, shape, lam)

  def replace(z, z_known):
    return z.at[:, :o].set(jnp.where(use_known, z_known, z[:, :o]))

  def body(z, xs):
    t, a_t, a_s = xs
    out = _split_output(eps_fn(z, jnp.full((shape[0],), t, jnp.int32)))[0]
    noise = (
      draw_noise(noise_mode, fold_in(base_key, t), fold_in(residual_key, t), shape, lam)
      if eta > 0
      else None
    )
    z_s, _ = ddim_step(z, out, a_t, a_s, eta=eta, noise=noise, clip_x0=clip_x0)
    # The known frames take the same step with their true x0. With eta > 0 the step
    # mixes the step noise (its base part shared by all frames) into every frame's
    # noise; a known centre frame kept at its starting noise would leave the base
    # generator predicting a base noise the other frames no longer hold.
    known_noise = (z[:, :o] - jnp.sqrt(a_t) * known) / jnp.sqrt(1.0 - a_t)
    z_known = ddim_update(
      known, known_noise, a_t, a_s, eta=eta, noise=None if noise is None else noise[:, :o]
    )
    return replace(z_s, z_known), None

  # The window's own Eq. 7 draw noises the known frames too (module docstring).
  z = replace(eps, jnp.sqrt(ab_t[0]) * known + jnp.sqrt(1.0 - ab_t[0]) * eps[:, :o])
  z, _ = jax.lax.scan(body, z, (jnp.asarray(ts), ab_t, ab_s))
  return z


def placed_known(window: int, overlap: int, recentre: bool) -> int:
  """How many known frames a window holds: `overlap`, or with `recentre` at most
  centre + 1, the last of them at the centre frame (`long_video_windows`)."""
  return min(overlap, centre_index(window) + 1) if recentre else overlap


def long_video_windows(
  step_fn: Callable,
  num_frames: int,
  window_shape,
  overlap: int,
  base_key,
  residual_key,
  *,
  fixed_base: bool = True,
  recentre: bool = True,
):
  """Yield (window index, new frames (B, n, H, W, C)) until `num_frames` frames are out.

  step_fn(base_key, residual_key, known, use_known) -> window video is a jitted
  `window_step` (same shapes every call: one compile). The first window yields all N
  frames, each later one its N - O new frames; only the last frames put out are kept
  between calls, so memory does not grow with `num_frames`.

  recentre: when the overlap reaches past the centre frame c = (N - 1) // 2 (O > c + 1),
  a window holds only the last c + 1 frames put out, at 0..c, so that the last of them
  is the centre frame; it makes frames c + 1..N - 1 and yields the first N - O of them
  (the rest, further from the known frames, are dropped). The known frames are then
  `placed_known(N, O, True)` frames, and O still sets the frames per window.
  """
  b, n = window_shape[0], window_shape[1]
  num_windows = check_long_video(num_frames, n, overlap)
  placed, stride = placed_known(n, overlap, recentre), n - overlap
  known = jnp.zeros((b, placed) + tuple(window_shape[2:]), jnp.float32)
  for w in range(num_windows):
    kb, kr = window_keys(base_key, residual_key, w, fixed_base)
    video = step_fn(kb, kr, known, jnp.asarray(w > 0))
    new = video if w == 0 else video[:, placed : placed + stride]
    known = jnp.concatenate([known, new], axis=1)[:, -placed:]
    yield w, new
