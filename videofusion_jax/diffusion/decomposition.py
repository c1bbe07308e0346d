"""The decomposed noise of VideoFusion (Eq. 7-13), as pure functions.

Each frame's noise is `eps[i] = sqrt(lam[i]) * b + sqrt(1 - lam[i]) * r[i]`: one base
noise `b` shared by all frames and a residual noise `r[i]` per frame. The centre frame
`c = (N - 1) // 2` has `lam[c] = 1`, so `eps[c] = b`: an image denoiser on the centre
frame predicts the shared noise (Eq. 11), which is then removed from every frame before
the residual denoiser runs (Eq. 12), and the two predictions recombine (Eq. 13).
Videos are `(B, N, H, W, C)`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

NOISE_MODES = ("decomposed", "standard")
OBJECTIVES = ("eps", "v")


def centre_index(num_frames: int) -> int:
  """0-based centre frame, `(N - 1) // 2` (frame 8 of 16 in the paper's 1-based count)."""
  return (int(num_frames) - 1) // 2


def other_frame_indices(num_frames: int) -> np.ndarray:
  """The N-1 non-centre frame indices, in order."""
  c = centre_index(num_frames)
  return np.array([i for i in range(num_frames) if i != c], np.int32)


def check_lam(lam: float) -> None:
  if not 0.0 <= float(lam) <= 1.0:
    raise ValueError(f"diffusion.lam={lam}; expected 0 <= lam <= 1")


def frame_lambdas(num_frames: int, lam: float) -> jnp.ndarray:
  """(N,) share of base noise per frame: 1 at the centre, `lam` elsewhere."""
  if int(num_frames) < 2:
    raise ValueError(f"num_frames={num_frames}; the decomposition needs num_frames >= 2")
  check_lam(lam)
  lams = np.full((num_frames,), float(lam), np.float32)
  lams[centre_index(num_frames)] = 1.0
  return jnp.asarray(lams)


def _frames_axis(per_frame: jnp.ndarray) -> jnp.ndarray:
  """(N,) -> (1, N, 1, 1, 1), to broadcast over a video."""
  return per_frame[None, :, None, None, None]


def _check_video_shape(shape, name: str = "shape") -> None:
  if len(shape) != 5:
    raise ValueError(f"{name}={tuple(shape)}; expected a video shape (B, N, H, W, C)")
  if shape[1] < 2:
    raise ValueError(f"{name}={tuple(shape)} has {shape[1]} frame(s); expected N >= 2")


def decomposed_noise_parts(base_key, residual_key, shape):
  """b (B, 1, H, W, C) from `base_key` and r (B, N, H, W, C) from `residual_key`."""
  _check_video_shape(shape)
  b, n, h, w, c = shape
  return (
    jax.random.normal(base_key, (b, 1, h, w, c)),
    jax.random.normal(residual_key, tuple(shape)),
  )


def compose_noise(b, r, lams) -> jnp.ndarray:
  """Eq. 7 with a shared base: sqrt(lam_i) b + sqrt(1 - lam_i) r_i.

  b (B, 1, H, W, C) (or anything broadcasting against r), r (B, N, H, W, C), lams (N,)
  -> (B, N, H, W, C). Kept apart from the drawing so that a Weizmann minibatch can share
  b across clips of one identity and r across clips of one action.
  """
  lams = _frames_axis(lams)
  return jnp.sqrt(lams) * b + jnp.sqrt(1.0 - lams) * r


def decomposed_noise(base_key, residual_key, shape, lam: float) -> jnp.ndarray:
  """Noise of `shape` (B, N, H, W, C): standard normal per frame, with
  corr(eps_i, eps_j) = sqrt(lam_i lam_j) between frames (eps_c = b exactly)."""
  b, r = decomposed_noise_parts(base_key, residual_key, shape)
  return compose_noise(b, r, frame_lambdas(shape[1], lam))


def standard_noise(key, shape) -> jnp.ndarray:
  """Independent N(0, 1) noise of `shape` (B, N, H, W, C): the VDM baseline's process."""
  _check_video_shape(shape)
  return jax.random.normal(key, tuple(shape))


def check_noise_mode(mode: str) -> None:
  if mode not in NOISE_MODES:
    raise ValueError(f"diffusion.noise_mode={mode!r}; expected one of {NOISE_MODES}")


def sample_noise(mode: str, base_key, residual_key, shape, lam: float) -> jnp.ndarray:
  """Noise of `shape` (B, N, H, W, C) for the process `mode`.

  "decomposed": Eq. 7 with b from `base_key` and r from `residual_key`. "standard":
  independent per-frame noise drawn from `residual_key` alone, so `base_key` has no
  effect there (a standard video has no content/motion split of its noise). `lam` is
  validated in both modes, so a config error surfaces whichever process runs.
  """
  check_noise_mode(mode)
  check_lam(lam)
  if mode == "decomposed":
    return decomposed_noise(base_key, residual_key, shape, lam)
  return standard_noise(residual_key, shape)


def _per_sample(a: jnp.ndarray) -> jnp.ndarray:
  """(B,) -> (B, 1, 1, 1, 1)."""
  return a[:, None, None, None, None]


def q_sample(x0, t, eps, alphas_cumprod) -> jnp.ndarray:
  """Forward noising (Eq. 9): z_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps.

  x0, eps (B, N, H, W, C); t (B,) integer timesteps; alphas_cumprod (T,).
  """
  ab = _per_sample(alphas_cumprod[t])
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


def remove_base_noise(z_t, b_hat, lams, ab_t) -> jnp.ndarray:
  """Eq. 12 on all N frames: z_t - sqrt(lam_i) sqrt(1 - ab_t) b_hat.

  z_t (B, N, H, W, C), b_hat (B, H, W, C), lams (N,), ab_t (B,) -> (B, N, H, W, C).

  For the centre frame (lam = 1) this is sqrt(ab_t) * x0_hat[c], the base generator's
  estimate of the clean centre frame at the input's signal scale.
  """
  return z_t - _frames_axis(jnp.sqrt(lams)) * _per_sample(jnp.sqrt(1.0 - ab_t)) * b_hat[:, None]


def compose_eps(b_hat, r_hat, lams) -> jnp.ndarray:
  """Eq. 13: eps_hat[c] = b_hat, eps_hat[i] = sqrt(lam_i) b_hat + sqrt(1 - lam_i) r_hat[i].

  b_hat (B, H, W, C), r_hat (B, N, H, W, C), lams (N,) -> (B, N, H, W, C). The centre
  entry of `r_hat` is never used: it is replaced by `b_hat` through `jnp.where`, not
  multiplied by sqrt(1 - 1) = 0, so even a NaN or inf there cannot leak.
  """
  n = r_hat.shape[1]
  eps = compose_noise(b_hat[:, None], r_hat, lams)
  is_centre = _frames_axis(jnp.arange(n) == centre_index(n))
  return jnp.where(is_centre, b_hat[:, None], eps)


def split_centre(x):
  """(B, N, ...) -> centre (B, ...), others (B, N-1, ...) in frame order."""
  c = centre_index(x.shape[1])
  # Two static slices rather than a gather with `other_frame_indices`: XLA keeps
  # slices and concatenation as cheap copies on every backend.
  return x[:, c], jnp.concatenate([x[:, :c], x[:, c + 1 :]], axis=1)


def merge_centre(x_centre, x_others):
  """Inverse of `split_centre`: (B, ...), (B, N-1, ...) -> (B, N, ...)."""
  c = centre_index(x_others.shape[1] + 1)
  return jnp.concatenate([x_others[:, :c], x_centre[:, None], x_others[:, c:]], axis=1)


def eps_from_v(z, v, alpha, sigma):
  """Noise from a v prediction for a sub-problem z = alpha x + sigma eps.

  For alpha^2 + sigma^2 = n^2 != 1 the sub-problem is rescaled to unit variance first:
  eps = (sigma / n) (z / n) + (alpha / n) v.
  """
  n2 = alpha**2 + sigma**2
  return sigma * z / n2 + alpha * v / jnp.sqrt(n2)


def v_target(x0, eps, alpha, sigma):
  """v = (alpha eps - sigma x0) / n, the target matching `eps_from_v`."""
  return (alpha * eps - sigma * x0) / jnp.sqrt(alpha**2 + sigma**2)


class DenoiseOutput(NamedTuple):
  eps: jnp.ndarray  # (B, N, H, W, C) predicted noise of every frame
  var_values: jnp.ndarray | None  # (B, N, H, W, C) learned-range variance values or None
  b_hat: jnp.ndarray | None  # (B, H, W, C) predicted base noise
  r_hat: jnp.ndarray | None  # (B, N-1, H, W, C) predicted residual noise


def _split_variance(out, expected_shape, learned_variance: bool, name: str):
  """Check a network's output shape (static, so at trace time) and split off the
  learned-range variance values (improved-diffusion: the last C channels)."""
  channels = expected_shape[-1]
  want = tuple(expected_shape[:-1]) + ((2 * channels,) if learned_variance else (channels,))
  if tuple(out.shape) != want:
    raise ValueError(
      f"{name} returned shape {tuple(out.shape)}; expected {want} "
      f"(learned_variance={learned_variance})"
    )
  if learned_variance:
    return out[..., :channels], out[..., channels:]
  return out, None


def _check_objective(objective: str) -> None:
  if objective not in OBJECTIVES:
    raise ValueError(f"diffusion.objective={objective!r}; expected one of {OBJECTIVES}")


def decomposed_denoise(
  z_t,
  ab_t,
  lam: float,
  base_fn: Callable,
  residual_fn: Callable,
  *,
  objective: str = "eps",
  stop_base_grad: bool = True,
  learned_variance: bool = False,
) -> DenoiseOutput:
  """The decomposed denoiser (Eq. 12-13): one base call, one residual call.

  Args:
    z_t: (B, N, H, W, C) noisy video; ab_t: (B,) alpha_bar at each sample's timestep.
    base_fn: z_centre (B, H, W, C) -> (B, H, W, C or 2C); sees only the centre frame.
    residual_fn: (z_res of the N-1 other frames (B, N-1, H, W, C), centre estimate
      sqrt(ab) x0_hat[c] (B, H, W, C)) -> (B, N-1, H, W, C or 2C).
    objective: "eps", or "v": each network predicts v of its own sub-problem, the base
      for z_c = sqrt(ab) x_c + sqrt(1-ab) b, the residual for
      z_res[i] = sqrt(ab) x_i + sqrt((1-ab)(1-lam)) r_i; converted to b_hat / r_hat here.
    stop_base_grad: the base prediction enters the non-centre frames (z_res and
      eps_hat) through `stop_gradient` (Eq. 14), so the base learns only from the
      centre frame; False is Table 7's "w/o stop gradient". eps_hat[c] = b_hat always
      keeps its gradient, and the centre estimate is always under `stop_gradient`.
    learned_variance: the networks return 2C channels; the last C are learned-range
      variance values in [-1, 1] (the centre's from the base, the others' from the
      residual network).

  Both callables already close over t and the conditions; each is called exactly once,
  so under `jax.jit` they are traced once. Returns `DenoiseOutput`: eps (B, N, H, W, C),
  var_values (B, N, H, W, C) or None, b_hat (B, H, W, C), r_hat (B, N-1, H, W, C).
  """
  _check_video_shape(z_t.shape, "z_t")
  _check_objective(objective)
  n = z_t.shape[1]
  lams = frame_lambdas(n, lam)
  a = _per_sample(jnp.sqrt(ab_t))[:, 0]  # (B, 1, 1, 1) for single frames
  s = _per_sample(jnp.sqrt(1.0 - ab_t))[:, 0]
  z_centre = z_t[:, centre_index(n)]

  b_out, b_var = _split_variance(base_fn(z_centre), z_centre.shape, learned_variance, "base_fn")
  b_hat = eps_from_v(z_centre, b_out, a, s) if objective == "v" else b_out
  b_sg = jax.lax.stop_gradient(b_hat) if stop_base_grad else b_hat

  z_res = remove_base_noise(z_t, b_sg, lams, ab_t)
  centre_estimate, z_res_others = split_centre(z_res)
  # The centre estimate is context for the residual network, never a path for its
  # loss into the base network (even with stop_base_grad=False, which only concerns
  # the base noise in z_res and eps_hat, Table 7).
  r_out, r_var = _split_variance(
    residual_fn(z_res_others, jax.lax.stop_gradient(centre_estimate)),
    z_res_others.shape,
    learned_variance,
    "residual_fn",
  )
  lam_others = lams[other_frame_indices(n)]
  if objective == "v":
    # Residual sub-problem: z_res[i] = sqrt(ab) x[i] + sqrt((1 - ab)(1 - lam)) r[i].
    r_scale = s[:, None] * _frames_axis(jnp.sqrt(1.0 - lam_others))
    r_hat = eps_from_v(z_res_others, r_out, a[:, None], r_scale)
  else:
    r_hat = r_out

  eps_others = compose_noise(b_sg[:, None], r_hat, lam_others)
  eps = merge_centre(b_hat, eps_others)
  var_values = merge_centre(b_var, r_var) if learned_variance else None
  return DenoiseOutput(eps, var_values, b_hat, r_hat)


def standard_denoise(
  z_t, ab_t, model_fn: Callable, *, objective: str = "eps", learned_variance: bool = False
) -> DenoiseOutput:
  """A standard (VDM baseline) denoiser: `model_fn(z_t (B, N, H, W, C))` returns eps, or
  v of z_t = sqrt(ab) x + sqrt(1-ab) eps, per frame (2C channels with
  `learned_variance`). -> `DenoiseOutput` with b_hat = r_hat = None."""
  _check_video_shape(z_t.shape, "z_t")
  _check_objective(objective)
  out, var = _split_variance(model_fn(z_t), z_t.shape, learned_variance, "model_fn")
  if objective == "v":
    out = eps_from_v(z_t, out, _per_sample(jnp.sqrt(ab_t)), _per_sample(jnp.sqrt(1 - ab_t)))
  return DenoiseOutput(out, var, None, None)
