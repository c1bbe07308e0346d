"""Sample statistics: each separates the failure it names from the others."""

import numpy as np
import pytest

from videofusion_jax.data.synthetic import SyntheticShapes
from videofusion_jax.data.video_io import to_uint8
from videofusion_jax.metrics.motion import (
  brightness_flicker,
  centre_distance,
  frame_change,
  object_motion,
)


def test_frame_change_counts_motion_and_flicker_counts_only_whole_frame_brightness():
  moving = np.zeros((1, 3, 8, 8, 1), np.uint8)
  for t in range(3):
    moving[0, t, :, 2 * t : 2 * t + 2] = 200  # a bar moving right: the mean stays 50
  flashing = np.zeros((1, 3, 8, 8, 1), np.uint8)
  flashing[0, 1] = 16  # the whole frame brighter by 16, then back
  # the bar: 2 columns of 200 appear and 2 vanish per step, 4/8 of the pixels by 200
  assert frame_change(moving) == 100.0 and brightness_flicker(moving) == 0.0
  assert frame_change(flashing) == 16.0 == brightness_flicker(flashing)
  # Frame 1 of 3 is the centre: frames 0 and 2 each differ from it in 4 columns of 8.
  assert centre_distance(moving) == 100.0 and centre_distance(flashing) == 16.0


def _square_video(xs, *, background=0, colour=(200, 60, 30), size=16):
  """One video of a 4x4 square whose left edge is at column x in each frame."""
  video = np.full((len(xs), size, size, 3), background, np.uint8)
  for t, x in enumerate(xs):
    video[t, 6:10, x : x + 4] = colour
  return video


def test_object_motion_tells_a_glide_from_jitter_in_place():
  glide = _square_video([2, 3, 4, 5, 6])
  jitter = _square_video([4, 6, 4, 6, 4])
  assert object_motion(glide[None]) == pytest.approx((1.0, 1.0, 1.0))
  # The same frame change per step (2 px), but back where it started.
  assert frame_change(jitter[None]) > frame_change(glide[None])
  speed, path_speed, straightness = object_motion(jitter[None])
  assert speed == pytest.approx(0.0) and path_speed == pytest.approx(2.0)
  assert straightness == pytest.approx(0.0)


def test_object_motion_reads_any_flat_background_and_skips_empty_videos():
  grey = _square_video([2, 4, 6, 8, 10], background=100, colour=(250, 250, 250))
  empty = np.full_like(grey, 100)
  assert object_motion(np.stack([grey, empty])) == pytest.approx((2.0, 2.0, 1.0))
  assert all(np.isnan(object_motion(empty[None])))
  with pytest.raises(ValueError, match=r"at least 2 frames.*\(1, 1, 16, 16, 3\)"):
    object_motion(grey[None, :1])


def test_synthetic_data_glides_at_its_configured_speed():
  # Each axis draws its velocity from U(-0.5, 0.5) px/frame: the mean net speed of a
  # straight glide would be ~0.38 px/frame; walls and two-shape centroids shorten it.
  source = SyntheticShapes(num_clips=64, speed=0.5, seed=3)
  videos = to_uint8(np.stack([source[i]["video"] for i in range(64)]))
  speed, path_speed, straightness = object_motion(videos)
  assert 0.2 < speed < 0.38 and straightness > 0.75
  slower = SyntheticShapes(num_clips=64, speed=0.25, seed=3)
  slow_videos = to_uint8(np.stack([slower[i]["video"] for i in range(64)]))
  assert object_motion(slow_videos).speed == pytest.approx(speed / 2, rel=0.2)
