"""Clips from a prepared TensorFlow Datasets (TFDS) video dataset, read through grain.

`tfds.data_source` opens the dataset's ArrayRecord files for random access, the way
grain reads everything else here (pipeline.py): no TensorFlow runs at read time for
datasets stored as image sequences (`bair_robot_pushing_small`); datasets with a TFDS
`Video` feature (`ucf101`, `moving_mnist`) need TensorFlow to decode their frames, and
TFDS registers them only where it is installed (the `[tfds]` extra).

Nothing is downloaded at run time: a dataset is prepared once, on a machine with the
network and TensorFlow, by `tfds build NAME --data_dir=DIR --file_format=array_record`
(TFDS's default format, TFRecord, is not random-access), and DIR/NAME is copied into
`data.data_dir`.

Clips are cut as the folder source cuts them (folders.py): `num_frames` frames
`frame_stride` apart, short side resized to `image_size` and centre-cropped, from the
centre of the video or, with `random_start`, from a window drawn anew each epoch.
Labels are class ids in the order of the sorted class names, as the folder source
numbers its class sub-folders, so both layouts of UCF101 mean the same classes (TFDS's
own order swaps HammerThrow/Hammering and JumpRope/JumpingJack); 0 for datasets
without labels.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import numpy as np
from absl import logging

from videofusion_jax.data.folders import resize_and_crop, window_start
from videofusion_jax.data.locked_source import LockedSource

# TFDS dataset -> (its video feature, its label feature or "")
KNOWN_DATASETS = {
  "bair_robot_pushing_small": ("image_main", ""),
  "ucf101": ("video", "label"),
  "moving_mnist": ("image_sequence", ""),
}
# Their frames are a TFDS `Video` feature, decoded by TensorFlow.
NEED_TENSORFLOW = ("ucf101", "moving_mnist")
INSTALL = "pip install -e '.[tfds]'"


class NotPrepared(FileNotFoundError):
  """The dataset is not prepared in `data.data_dir` in a format grain can read."""


def _family(name: str) -> str:
  """'ucf101/ucf101_1:2.0.0' -> 'ucf101'."""
  return name.split("/")[0].split(":")[0]


def default_data_dir() -> str:
  """Where TFDS looks when `data.data_dir` is empty: $TFDS_DATA_DIR or
  ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def how_to_prepare(name: str, data_dir: str) -> str:
  return (
    f"nothing is downloaded at run time: on a machine with the network and "
    f"TensorFlow ({INSTALL}), run `tfds build {name} --data_dir=DIR "
    f"--file_format=array_record` and copy DIR/{_family(name)} into {data_dir}/"
  )


def open_prepared(name: str, split: str, data_dir: str):
  """`tfds.data_source` of a prepared dataset (random access, no download); raises
  NotPrepared or ValueError with one line naming the fix."""
  if importlib.util.find_spec("tensorflow_datasets") is None:
    raise ValueError(f"data.source='tfds' needs tensorflow-datasets: {INSTALL}")
  import tensorflow_datasets as tfds  # here, not at the top: the core install has no TFDS

  where = data_dir or default_data_dir()
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except tfds.core.registered.DatasetNotFoundError:
    if _family(name) in NEED_TENSORFLOW and importlib.util.find_spec("tensorflow") is None:
      raise ValueError(
        f"data.tfds_name={name}: TFDS registers this dataset only where "
        f"TensorFlow is installed (its Video feature decodes with it): "
        f"{INSTALL}"
      ) from None
    raise ValueError(
      f"data.tfds_name={name}: TFDS has no dataset of that name "
      f"(known here: {', '.join(KNOWN_DATASETS)})"
    ) from None
  except Exception:  # diagnosed below, re-raised if it is not about files
    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
      raise NotPrepared(
        f"data.tfds_name={name} is not prepared in data.data_dir={where} "
        f"(no {builder.data_dir}); "
        f"{how_to_prepare(name, where)}"
      ) from None
    fmt = builder.info.file_format
    if fmt is not None and fmt.value not in ("array_record", "parquet"):
      raise NotPrepared(
        f"data.tfds_name={name} is prepared in {builder.data_dir} as "
        f"{fmt.value}, which grain cannot read at random; build it again "
        f"with --file_format=array_record: "
        f"{how_to_prepare(name, where)}"
      ) from None
    raise


@dataclasses.dataclass
class TfdsClips(LockedSource):
  """Random-access source of {"video": (N, H, W, C) float32 in [-1, 1], "label": int32,
  "key": "split/index"} over a prepared TFDS video dataset."""

  name: str
  split: str
  data_dir: str
  num_frames: int
  image_size: int
  channels: int = 3
  frame_stride: int = 1
  random_start: bool = False
  seed: int = 0

  def __post_init__(self):
    family = _family(self.name)
    if family not in KNOWN_DATASETS:
      raise ValueError(
        f"data.tfds_name={self.name}; the video datasets read here are {', '.join(KNOWN_DATASETS)}"
      )
    self.video_key, label_key = KNOWN_DATASETS[family]
    self.source = open_prepared(self.name, self.split, self.data_dir)
    if not len(self.source):
      raise ValueError(f"data.tfds_name={self.name} split {self.split!r} holds no videos")
    features = self.source.dataset_info.features
    # (H, W, C): a Video feature's shape leads with its frame count, a Sequence's
    # items are single images.
    frame_shape = tuple(features[self.video_key].shape)[-3:]
    if frame_shape[-1] != self.channels:
      raise ValueError(
        f"data.channels={self.channels} but {self.name}'s frames have "
        f"{frame_shape[-1]} channels {frame_shape}"
      )
    self.label_key = label_key
    self.classes = list(features[label_key].names) if label_key else []
    # TFDS class id -> id in sorted-name order (see the module docstring).
    self._label_ids = np.argsort(np.argsort(self.classes)).astype(np.int32)
    LockedSource.__init__(self)
    self.skipped: set[int] = set()

  def __len__(self) -> int:
    return len(self.source)

  def clip(self, example: dict, index: int, epoch: int = 0) -> np.ndarray:
    """uint8 (N, image_size, image_size, C) of `example`'s window in pass `epoch`;
    raises ValueError if the video is shorter than a clip."""
    frames = np.asarray(example[self.video_key])
    span = (self.num_frames - 1) * self.frame_stride + 1
    if len(frames) < span:
      raise ValueError(
        f"{self.name} {self.split}[{index}] has {len(frames)} frames; a "
        f"clip needs {span} ({self.num_frames} frames, stride "
        f"{self.frame_stride})"
      )
    start = window_start(
      len(frames), span, random_start=self.random_start, seed=self.seed, epoch=epoch, index=index
    )
    picked = frames[start : start + span : self.frame_stride]
    if picked.shape[1:3] == (self.image_size, self.image_size):
      return picked
    # PIL resizes (H, W) or (H, W, 3) images: one-channel frames go through as (H, W).
    flat = picked[..., 0] if self.channels == 1 else picked
    out = np.stack([resize_and_crop(f, self.image_size) for f in flat])
    return out[..., None] if self.channels == 1 else out

  def __getitem__(self, index: int) -> dict:
    return self.at_epoch(index, 0)

  def at_epoch(self, index: int, epoch: int) -> dict:
    """Item `index` with its window of pass `epoch`; a video shorter than a clip is
    skipped for the next one, read at the same epoch."""
    for offset in range(len(self)):
      i = (index + offset) % len(self)
      example = self.source[i]
      try:
        video = self.clip(example, i, epoch)
      except ValueError as e:
        with self._lock:
          if i not in self.skipped:
            self.skipped.add(i)
            logging.warning("Skipping %s (%d skipped so far)", e, len(self.skipped))
        continue
      label = self._label_ids[int(example[self.label_key])] if self.label_key else 0
      return {
        "video": video.astype(np.float32) / 127.5 - 1.0,
        "label": np.int32(label),
        "key": f"{self.split}/{i}",
      }
    raise ValueError(
      f"no video of {self.name} split {self.split!r} holds a clip of "
      f"{self.num_frames} frames (stride {self.frame_stride})"
    )
