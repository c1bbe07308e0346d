"""A built-in synthetic video set: coloured shapes gliding on a plain background.

Deterministic per index (clip `i` of seed `s` is always the same), random access, no
files: the default data of `configs/demo.py` and of the tests. Shapes are rendered at
4x resolution and box-filtered down, so sub-pixel motion gives smooth frame-to-frame
changes instead of one-pixel jumps.

Two kinds of motion (`motion`):
- "random": each shape drifts with its own random velocity and bounces off the walls.
  Nothing in a frame says where its shapes go next.
- "colour": each colour glides in its own direction (`DIRECTIONS`) at `speed`, placed
  so that it stays inside the frame for the whole clip. One frame then says where every
  shape goes. That is the motion a VideoFusion learns soonest: its residual generator
  denoises each frame from the centre frame and the frame's own noise, so frames agree
  on a motion the centre frame predicts without having to agree through the noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

_PALETTE = (
  np.array(
    [[230, 60, 50], [50, 170, 80], [60, 90, 220], [240, 200, 40], [200, 80, 200], [40, 200, 210]],
    np.float32,
  )
  / 127.5
  - 1.0
)
_SUPERSAMPLE = 4
SHAPES = ("square", "disc")
LABELS = ("shape", "colour")
MOTIONS = ("random", "colour")
NUM_COLOURS = len(_PALETTE)
# motion="colour": palette colour k glides along angle 60k degrees (y down): right,
# down-right, down-left, left, up-left, up-right.
DIRECTIONS = np.stack(
  [np.sin(np.arange(NUM_COLOURS) * np.pi / 3), np.cos(np.arange(NUM_COLOURS) * np.pi / 3)], -1
).astype(np.float32)  # (NUM_COLOURS, 2) unit (dy, dx)


def class_colour(label: int) -> np.ndarray:
  """The RGB colour in [-1, 1] of `labels="colour"` class `label`."""
  return _PALETTE[label].copy()


def foreground_colour(videos: np.ndarray, background: float = -1.0) -> np.ndarray:
  """Mean colour (K, 3) of each video's pixels that differ from the background."""
  videos = np.asarray(videos, np.float32)
  mask = np.abs(videos - background).max(axis=-1, keepdims=True) > 0.5
  total = (videos * mask).sum(axis=(1, 2, 3))
  return total / np.maximum(mask.sum(axis=(1, 2, 3)), 1)


@dataclasses.dataclass(frozen=True)
class SyntheticShapes:
  """Random-access source of clips `(N, H, W, 3)` float32 in [-1, 1] with a class label.

  `labels="shape"`: the label is the kind of the first shape (0 square, 1 disc).
  `labels="colour"`: the label is a palette index (NUM_COLOURS classes) and every shape
  of the clip has that colour, so a class-conditioned model's samples can be checked
  by their colour (`class_colour`). `motion`: "random" or "colour" (the module's
  docstring); `speed` is the bound of each velocity component for "random" and the
  speed along the colour's direction for "colour", in pixels per frame at `image_size`.
  """

  num_clips: int = 10_000
  num_frames: int = 8
  image_size: int = 16
  max_shapes: int = 2
  speed: float = 0.5  # pixels per frame at image_size (upper bound per axis)
  background: float = -1.0  # black
  seed: int = 0
  labels: str = "shape"  # what the label says: "shape" or "colour"
  motion: str = "random"  # "random" (drift and bounce) or "colour" (colour -> direction)

  def __post_init__(self):
    if self.labels not in LABELS:
      raise ValueError(f"data.synthetic_labels={self.labels!r}; expected one of {LABELS}")
    if self.motion not in MOTIONS:
      raise ValueError(f"data.synthetic_motion={self.motion!r}; expected one of {MOTIONS}")
    if self.max_shapes < 1:
      raise ValueError(f"data.synthetic_shapes={self.max_shapes}; expected >= 1")
    travel = self.speed * (self.num_frames - 1)
    if self.motion == "colour" and not 0 < travel <= self.image_size / 2:
      raise ValueError(
        f"data.synthetic_speed={self.speed} over {self.num_frames} frames glides "
        f"{travel:g} px; motion 'colour' needs a path of (0, {self.image_size / 2:g}] px "
        f"(half of data.image_size={self.image_size}) so that shapes stay inside"
      )
    if self.num_clips < 1 or self.num_frames < 1 or self.image_size < 4:
      raise ValueError(
        f"SyntheticShapes(num_clips={self.num_clips}, num_frames="
        f"{self.num_frames}, image_size={self.image_size}); expected "
        "num_clips >= 1, num_frames >= 1, image_size >= 4"
      )

  def __len__(self) -> int:
    return self.num_clips

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.num_clips:
      raise IndexError(f"clip index {index} outside [0, {self.num_clips})")
    rng = np.random.default_rng([self.seed, index])
    size = self.image_size * _SUPERSAMPLE
    n = int(rng.integers(1, self.max_shapes + 1))
    kinds = rng.integers(0, len(SHAPES), n)
    palette = rng.choice(len(_PALETTE), n, replace=False)
    radii = rng.uniform(0.15, 0.25, n) * size
    pos = np.stack([rng.uniform(r, size - r, 2) for r in radii])
    vel = rng.uniform(-1.0, 1.0, (n, 2)) * self.speed * _SUPERSAMPLE
    label = kinds[0]
    if self.labels == "colour":  # drawn last: the clips' other draws stay the same
      label = rng.integers(0, NUM_COLOURS)
      palette = np.full(n, label)
    colours = _PALETTE[palette]
    if self.motion == "colour":
      vel = DIRECTIONS[palette] * self.speed * _SUPERSAMPLE
      radii, pos = _inside_for_clip(rng, radii, vel, self.num_frames, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    frames = np.empty((self.num_frames, self.image_size, self.image_size, 3), np.float32)
    for f in range(self.num_frames):
      canvas = np.full((size, size, 3), self.background, np.float32)
      for k in range(n):
        (cy, cx), r = pos[k], radii[k]
        if kinds[k] == 0:
          mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        else:
          mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        canvas[mask] = colours[k]
      frames[f] = canvas.reshape(
        self.image_size, _SUPERSAMPLE, self.image_size, _SUPERSAMPLE, 3
      ).mean(axis=(1, 3))
      pos, vel = _bounce(pos + vel, vel, radii, size)
    return {"video": frames, "label": np.int32(label)}


def _inside_for_clip(rng, radii, vel, num_frames, size):
  """Radii and start positions that keep each shape inside the frame while it glides
  `num_frames - 1` steps of `vel` (a path of at most half the frame, checked in
  `__post_init__`): shapes too big for the path shrink to fit."""
  travel = np.abs(vel).max(axis=1) * (num_frames - 1)
  radii = np.minimum(radii, (size - travel) / 2)
  lo = radii[:, None] + np.maximum(-vel, 0) * (num_frames - 1)
  hi = size - radii[:, None] - np.maximum(vel, 0) * (num_frames - 1)
  return radii, lo + rng.uniform(0.0, 1.0, lo.shape) * (hi - lo)


def _bounce(pos, vel, radii, size):
  """Reflect shapes that crossed a wall back inside, reversing that velocity component."""
  lo, hi = radii[:, None], size - radii[:, None]
  vel = np.where((pos < lo) | (pos > hi), -vel, vel)
  pos = np.where(pos < lo, 2 * lo - pos, np.where(pos > hi, 2 * hi - pos, pos))
  return pos, vel
