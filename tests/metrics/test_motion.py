"""Sample statistics: each separates the failure it names from the others."""

import numpy as np
import pytest

from videofusion_jax.data.synthetic import DIRECTIONS, SyntheticShapes
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


def _centroids(video):
  """Per-frame centroid (N, 2) of a one-colour float video on black: a box-filtered
  pixel is coverage x colour, so weighting by its brightest channel weighs coverage."""
  weight = (video + 1).max(axis=-1)  # (N, H, W)
  ys, xs = np.mgrid[0 : video.shape[1], 0 : video.shape[2]]
  return (
    np.stack([(weight * ys).sum((1, 2)), (weight * xs).sum((1, 2))], -1)
    / weight.sum((1, 2))[:, None]
  )


def test_colour_motion_glides_each_colour_its_own_way_inside_the_frame():
  source = SyntheticShapes(
    num_clips=48, num_frames=8, image_size=16, speed=0.75, motion="colour", labels="colour"
  )
  for i in range(48):
    video, k = source[i]["video"], source[i]["label"]  # the label is the colour's index
    centroids = _centroids(video)
    # The colour's direction at 0.75 px/frame, every frame (the 4x supersampling grid
    # rounds a step to a quarter pixel).
    np.testing.assert_allclose((centroids[-1] - centroids[0]) / 7, 0.75 * DIRECTIONS[k], atol=0.05)
    steps = np.diff(centroids, axis=0)
    np.testing.assert_allclose(steps, np.broadcast_to(0.75 * DIRECTIONS[k], steps.shape), atol=0.2)
    # Inside for the whole clip: no frame's edge cuts a part of the shape off (the area
    # varies by up to 7% with the sub-pixel position; a shape a pixel past the edge
    # loses a fifth or more).
    area = (video + 1).max(axis=-1).sum(axis=(1, 2))
    np.testing.assert_allclose(area, area.max(), rtol=0.1, err_msg=f"clip {i} leaves the frame")
  videos = to_uint8(np.stack([source[i]["video"] for i in range(48)]))
  assert object_motion(videos) == pytest.approx((0.75, 0.75, 1.0), abs=0.03)


def test_colour_motion_refuses_a_path_longer_than_half_the_frame():
  with pytest.raises(ValueError, match=r"data.synthetic_speed=1.5 over 8 frames glides 10.5 px"):
    SyntheticShapes(num_frames=8, image_size=16, speed=1.5, motion="colour")
  with pytest.raises(ValueError, match="data.synthetic_motion='spin'"):
    SyntheticShapes(motion="spin")
