"""(low, high) resolution pairs for training the super-resolution stage.

Wraps any clip source: item `i` is the source's clip as the high-resolution target plus
the same clip downsampled to `low_res_size` as the condition,
`{"video": (N, H, W, C), "cond": {"low_res": (N, h, w, C)}, ...}` (grain batches the
nested dict like the flat one). The downsampling is PIL's antialiased bilinear, the
filter `folders.resize_and_crop` uses to make the base model's training frames, so the
SR model is conditioned on frames that look like what the base model learned to make.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
from PIL import Image

from videofusion_jax.data.folders import item_at_epoch


def downsample_video(video: np.ndarray, size: int) -> np.ndarray:
  """(N, H, W, C) float32 -> (N, size, size, C) float32, antialiased bilinear per channel."""
  n, h, w, c = video.shape
  if size > min(h, w):
    raise ValueError(f"data.low_res_size={size} is larger than the clips' {h}x{w} frames")
  out = np.empty((n, size, size, c), np.float32)
  for i in range(n):
    for k in range(c):
      img = Image.fromarray(np.ascontiguousarray(video[i, :, :, k], np.float32))
      out[i, :, :, k] = np.asarray(img.resize((size, size), Image.BILINEAR))
  return out


@dataclasses.dataclass(frozen=True)
class LowResPairs:
  """Random-access source of high-res clips with their low-res versions in `cond`."""

  source: Sequence[dict[str, Any]]
  low_res_size: int

  def __post_init__(self):
    if self.low_res_size < 1:
      raise ValueError(f"data.low_res_size={self.low_res_size}; expected >= 1")

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    return self.at_epoch(index, 0)

  def at_epoch(self, index: int, epoch: int) -> dict:
    """The pair of epoch `epoch`'s clip (a new window each epoch, for video folders)."""
    item = dict(item_at_epoch(self.source, index, epoch))
    low = downsample_video(item["video"], self.low_res_size)
    item["cond"] = dict(item.get("cond", {}), low_res=low)
    return item
