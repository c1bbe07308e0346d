"""What a Pipeline call returns: uint8 videos (K, N, H, W, 3), checked, saved and shown.

A one-frame video (N = 1, what `Pipeline.from_converted` makes: an image U-Net alone
makes images) is saved as a PNG and shown as an image; a video of N >= 2 frames as an
mp4 and an inline `<video>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videofusion_jax import storage
from videofusion_jax.data import video_io
from videofusion_jax.sampling import display


def check_videos(videos) -> np.ndarray:
  videos = np.asarray(videos)
  if videos.ndim != 5 or videos.dtype != np.uint8:
    raise ValueError(
      f"videos have shape {videos.shape} dtype {videos.dtype}; expected "
      "uint8 (K, N, H, W, 3), as a Pipeline call returns"
    )
  return videos


def save_videos(videos, out_dir: str, *, fps: int) -> list[Path]:
  """Write each video as OUT_DIR/video_XXX.mp4, or each one-frame video as
  OUT_DIR/image_XXX.png (lossless); return the paths."""
  videos = check_videos(videos)
  out = storage.path(out_dir)
  if videos.shape[1] == 1:
    return [video_io.write_png(out / f"image_{k:03d}.png", v[0]) for k, v in enumerate(videos)]
  return [video_io.write_mp4(out / f"video_{k:03d}.mp4", v, fps=fps) for k, v in enumerate(videos)]


def show_videos(videos, *, fps: int, **kwargs) -> None:
  """Show the videos in the running notebook (`display.show_videos`), one-frame videos
  as images (`display.show_images`); `kwargs`: e.g. `titles=`, `columns=`."""
  videos = check_videos(videos)
  if videos.shape[1] == 1:
    display.show_images(videos[:, 0], **kwargs)
  else:
    kwargs.setdefault("fps", fps)
    display.show_videos(videos, **kwargs)
