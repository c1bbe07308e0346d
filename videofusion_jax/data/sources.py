"""Build the clip source named by `config.data.source`."""

from __future__ import annotations

import ml_collections

from videofusion_jax.data.synthetic import SyntheticShapes

SOURCES = ("synthetic",)


def make_source(data: ml_collections.ConfigDict, *, seed: int):
  """A random-access source of {"video": (N, H, W, C) float32 in [-1, 1], "label"}."""
  if data.source == "synthetic":
    if data.channels != 3:
      raise ValueError(f"data.channels={data.channels}; the synthetic set is RGB (3)")
    return SyntheticShapes(num_clips=data.num_clips, num_frames=data.num_frames,
                           image_size=data.image_size, speed=data.synthetic_speed, seed=seed)
  raise ValueError(f"data.source={data.source!r}; expected one of {SOURCES}")
