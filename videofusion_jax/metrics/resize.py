"""Frame resizing exactly as the reference evaluation scripts do it.

FVD numbers move with the resize: the original FVD code (TF1 `tf.image.resize_bilinear`)
samples source pixel `i * in / out` (no half-pixel offset), while TATS/VideoGPT's
PyTorch `F.interpolate(..., mode='bilinear', align_corners=False)` samples
`(i + 0.5) * in / out - 0.5`, and TGAN's IS script resizes with OpenCV's bicubic
(a = -0.75). None of them antialias when shrinking. `jax.image.resize` matches none of
these exactly, so each is written as a small (out, in) interpolation matrix, built once
in numpy, and applied with two einsums (cheap next to the networks, and jit-friendly).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

MODES = ("tf1", "torch", "opencv_cubic")


@functools.lru_cache(maxsize=32)
def resize_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
  """(out_size, in_size) float32 weights: `out = W @ in` along one axis."""
  if mode not in MODES:
    raise ValueError(f"resize mode {mode!r}; expected one of {MODES}")
  if in_size < 1 or out_size < 1:
    raise ValueError(f"resize from {in_size} to {out_size} pixels; both must be >= 1")
  w = np.zeros((out_size, in_size), np.float64)
  scale = in_size / out_size
  dst = np.arange(out_size, dtype=np.float64)
  if mode == "opencv_cubic":
    src = (dst + 0.5) * scale - 0.5
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    a = -0.75  # OpenCV's INTER_CUBIC coefficient
    for k, d in zip(range(-1, 3), (1 + t, t, 1 - t, 2 - t)):
      weight = np.where(
        d <= 1, ((a + 2) * d - (a + 3)) * d * d + 1, ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
      )
      np.add.at(w, (np.arange(out_size), np.clip(i0 + k, 0, in_size - 1)), weight)
    return w.astype(np.float32)
  if mode == "tf1":
    src = dst * scale  # half_pixel_centers=False
  else:
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)  # PyTorch clamps below at 0
  i0 = np.floor(src).astype(np.int64)
  i1 = np.minimum(i0 + 1, in_size - 1)
  frac = src - i0
  np.add.at(w, (np.arange(out_size), i0), 1.0 - frac)
  np.add.at(w, (np.arange(out_size), i1), frac)
  return w.astype(np.float32)


def resize_frames(videos, height: int, width: int, mode: str):
  """(..., H, W, C) float -> (..., height, width, C); the identity when sizes match."""
  h, w = videos.shape[-3], videos.shape[-2]
  if (h, w) != (height, width):
    hp = jnp.asarray(resize_matrix(h, height, mode))
    wp = jnp.asarray(resize_matrix(w, width, mode))
    videos = jnp.einsum("oh,...hwc->...owc", hp, videos, precision="highest")
    videos = jnp.einsum("pw,...owc->...opc", wp, videos, precision="highest")
  return videos
