"""Build the clip source named by `config.data.source`."""

from __future__ import annotations

import ml_collections

from videofusion_jax.data.folders import VideoFolder
from videofusion_jax.data.superres_pairs import LowResPairs
from videofusion_jax.data.synthetic import SyntheticShapes
from videofusion_jax.data.tfds_source import TfdsClips
from videofusion_jax.data.webvid import WebVidSource
from videofusion_jax.data.weizmann import WeizmannFolder

SOURCES = ("synthetic", "folder", "weizmann", "webvid", "tfds")


def make_source(data: ml_collections.ConfigDict, *, seed: int):
  """A random-access source of {"video": (N, H, W, C) float32 in [-1, 1], "label"};
  with `data.low_res_size` (super-resolution configs) each item also holds
  `"cond": {"low_res": (N, h, w, C)}`, the clip downsampled (superres_pairs.py)."""
  source = _clip_source(data, seed=seed)
  if data.get("low_res_size", 0):
    if isinstance(source, WeizmannFolder):
      raise ValueError(
        "data.low_res_size is set with data.source='weizmann'; (low, high) "
        "pairs are made from the synthetic or folder sources"
      )
    return LowResPairs(source, int(data.low_res_size))
  return source


def _clip_source(data: ml_collections.ConfigDict, *, seed: int):
  if data.source == "synthetic":
    if data.channels != 3:
      raise ValueError(f"data.channels={data.channels}; the synthetic set is RGB (3)")
    return SyntheticShapes(
      num_clips=data.num_clips,
      num_frames=data.num_frames,
      image_size=data.image_size,
      speed=data.synthetic_speed,
      seed=seed,
      labels=data.synthetic_labels,
      motion=data.synthetic_motion,
      max_shapes=data.synthetic_shapes,
    )
  if data.source == "folder":
    if data.channels != 3:
      raise ValueError(f"data.channels={data.channels}; video folders are read as RGB (3)")
    if not data.path:
      raise ValueError(
        "data.path is empty; set it to a folder of videos, e.g. "
        "--config=configs/folder.py:/path/to/videos"
      )
    return VideoFolder(
      data.path,
      num_frames=data.num_frames,
      image_size=data.image_size,
      frame_stride=data.frame_stride,
      random_start=data.random_start,
      seed=seed,
      fps=data.fps,
      split_file=data.split_file,
      download=data.download,
    )
  if data.source == "weizmann":
    if data.channels != 3:
      raise ValueError(f"data.channels={data.channels}; Weizmann videos are read as RGB (3)")
    return WeizmannFolder(
      data.path,
      num_frames=data.num_frames,
      image_size=data.image_size,
      frame_stride=data.frame_stride,
      random_start=data.random_start,
      seed=seed,
      fps=data.fps,
      download=data.download,
      group_identities=data.group_identities,
      group_actions=data.group_actions,
    )
  if data.source == "webvid":
    if data.channels != 3:
      raise ValueError(f"data.channels={data.channels}; WebVid videos are read as RGB (3)")
    return WebVidSource(
      data.path,
      num_frames=data.num_frames,
      image_size=data.image_size,
      frame_stride=data.frame_stride,
      random_start=data.random_start,
      seed=seed,
      fps=data.fps,
      download=data.download,
      csv_path=data.webvid_csv,
      template=data.webvid_template,
    )
  if data.source == "tfds":
    if not data.tfds_name:
      raise ValueError(
        "data.tfds_name is empty; set it to a prepared TFDS video dataset, "
        "e.g. bair_robot_pushing_small (configs/bair.py)"
      )
    return TfdsClips(
      data.tfds_name,
      split=data.split,
      data_dir=data.data_dir,
      num_frames=data.num_frames,
      image_size=data.image_size,
      channels=data.channels,
      frame_stride=data.frame_stride,
      random_start=data.random_start,
      seed=seed,
    )
  raise ValueError(f"data.source={data.source!r}; expected one of {SOURCES}")
