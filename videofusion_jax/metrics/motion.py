"""How sampled videos move: cheap statistics of uint8 videos `(K, N, H, W, C)`.

None of these is a quality score (FVD is, `fvd.py`). Each names one way a sample can be
wrong. `frame_change` is how much consecutive frames differ, and `brightness_flicker` is
the share of that which is the whole frame getting brighter or darker. `centre_distance`
measures how far the frames drift from the base generator's centre frame.
`object_motion` separates real motion from jitter, for objects on a plain background.
The sample CLI prints them, and benchmarks/RESULTS.md compares them with the data's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from videofusion_jax.diffusion.decomposition import centre_index, other_frame_indices


def frame_change(videos: np.ndarray) -> float:
  """Mean absolute change between consecutive frames, in 0..255 units: how much a
  video moves (or flickers). uint8 (K, N, H, W, C)."""
  return float(np.abs(np.diff(videos.astype(np.float32), axis=1)).mean())


def centre_distance(videos: np.ndarray) -> float:
  """Mean absolute difference between each non-centre frame and the centre frame, in
  0..255 units: whether the residual frames show what the base generator's centre frame
  shows (the synthetic data's is ~8/255; frames that drift away from the centre give
  20+). uint8 (K, N, H, W, C)."""
  frames = videos.astype(np.float32)
  c = centre_index(frames.shape[1])
  others = np.asarray(other_frame_indices(frames.shape[1]))
  return float(np.abs(frames[:, others] - frames[:, c : c + 1]).mean())


def brightness_flicker(videos: np.ndarray) -> float:
  """Mean absolute change of a frame's mean intensity between consecutive frames, in
  0..255 units: the part of `frame_change` that is the whole frame getting brighter or
  darker, which real footage (and the synthetic data, ~0.7) barely has. uint8 (K, N, H,
  W, C)."""
  means = videos.astype(np.float32).mean(axis=(2, 3, 4))
  return float(np.abs(np.diff(means, axis=1)).mean())


class ObjectMotion(NamedTuple):
  """How the foreground's centroid moves, in pixels per frame, averaged over videos.

  A glide in a straight line has `path_speed == speed` and `straightness` 1. Jitter in
  place travels a path but gets nowhere, so `speed` is near 0 and `straightness` is
  small. The synthetic data (`configs/demo.py`) moves 0.29 px/frame net along a path of
  0.35 (straightness 0.84, less than 1 where shapes bounce off the walls).
  """

  speed: float  # |last centroid - first| / (N - 1)
  path_speed: float  # sum of |centroid steps| / (N - 1)
  straightness: float  # speed / path_speed

  def describe(self) -> str:
    return (
      f"objects move {self.speed:.2f} px/frame along a path of "
      f"{self.path_speed:.2f} (straightness {self.straightness:.2f})"
    )


def object_motion(videos: np.ndarray, *, threshold: float = 64.0) -> ObjectMotion:
  """Centroid motion of whatever stands out from a plain background.

  For videos of objects on one flat colour, like the synthetic set. The background is
  each video's median colour, and a pixel's weight is how far its largest channel
  differs from it beyond `threshold` (0..255). Frames without such pixels (an empty
  video) have no centroid, so only videos with foreground in every frame count.
  Returns NaNs when there are none. uint8 (K, N, H, W, C).
  """
  frames = videos.astype(np.float32)
  k, n, h, w, _ = frames.shape
  if n < 2:
    raise ValueError(f"object_motion needs at least 2 frames; videos have shape {videos.shape}")
  background = np.median(frames.reshape(k, -1, frames.shape[-1]), axis=1)
  contrast = np.abs(frames - background[:, None, None, None]).max(axis=-1)
  weight = np.clip(contrast - threshold, 0.0, None)  # (K, N, H, W)
  mass = weight.sum(axis=(2, 3))
  has_object = (mass > 0).all(axis=1)
  if not has_object.any():
    return ObjectMotion(float("nan"), float("nan"), float("nan"))
  weight, mass = weight[has_object], mass[has_object]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  centroid = (
    np.stack([(weight * ys).sum(axis=(2, 3)), (weight * xs).sum(axis=(2, 3))], axis=-1)
    / mass[..., None]
  )  # (K', N, 2)
  speed = np.linalg.norm(centroid[:, -1] - centroid[:, 0], axis=-1).mean() / (n - 1)
  path = np.linalg.norm(np.diff(centroid, axis=1), axis=-1).sum(axis=1).mean() / (n - 1)
  straightness = speed / path if path > 0 else float("nan")
  return ObjectMotion(float(speed), float(path), float(straightness))
