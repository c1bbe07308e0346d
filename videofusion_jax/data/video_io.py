"""Writing and reading videos: mp4 and GIF through PyAV, PNG frame strips through Pillow.

Videos are uint8 arrays `(N, H, W, 3)`; `to_uint8` maps model outputs in [-1, 1].
Files are written to a temporary name and renamed, so a crash never leaves a
half-written video under the final name; a `gs://` path is written to a local temporary
file and uploaded (`storage.local_then_upload`: ffmpeg's muxers seek back in the file
they write, which an upload stream cannot do).
"""

from __future__ import annotations

import contextlib
import os

import av
import numpy as np
from etils import epath
from PIL import Image

from videofusion_jax import storage


def to_uint8(video: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> [0, 255] uint8, rounding to nearest."""
  return np.round((np.clip(np.asarray(video, np.float32), -1.0, 1.0) + 1.0) * 127.5).astype(
    np.uint8
  )


def _check_video(video: np.ndarray) -> np.ndarray:
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] not in (1, 3) or video.dtype != np.uint8:
    raise ValueError(
      f"video has shape {video.shape} dtype {video.dtype}; expected uint8 "
      "(N, H, W, 3) or (N, H, W, 1)"
    )
  return np.repeat(video, 3, axis=-1) if video.shape[-1] == 1 else video


_atomic = storage.local_then_upload


def write_mp4(path: str | os.PathLike, video: np.ndarray, fps: int = 8) -> epath.Path:
  """H.264 mp4 (yuv444p keeps small frames' colours exact enough to inspect)."""
  video = _check_video(video)
  n, h, w, _ = video.shape
  with _atomic(path) as tmp:
    with av.open(str(tmp), mode="w") as container:
      stream = container.add_stream("libx264", rate=fps)
      stream.width, stream.height = w, h
      stream.pix_fmt = "yuv444p"
      stream.options = {"crf": "10"}
      for frame in video:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
  return storage.path(path)


def _palette_frame(frame: np.ndarray) -> av.VideoFrame:
  """One RGB frame as a pal8 frame with its own adaptive 256-colour palette (the
  palette Pillow's GIF writer would choose)."""
  image = Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE)
  rgb = np.asarray(image.getpalette("RGB"), np.uint8).reshape(-1, 3)
  argb = np.zeros((256, 4), np.uint8)
  argb[:, 0] = 255  # opaque
  argb[: len(rgb), 1:] = rgb
  return av.VideoFrame.from_ndarray((np.asarray(image), argb), format="pal8")


def write_gif(path: str | os.PathLike, video: np.ndarray, fps: int = 8) -> epath.Path:
  """Looping GIF holding every frame. Written by ffmpeg's encoder, not Pillow's: Pillow
  merges identical consecutive frames into one longer frame, so a 16-frame video with a
  repeated frame came back as 15 frames."""
  video = _check_video(video)
  _, h, w, _ = video.shape
  with _atomic(path) as tmp:
    with av.open(str(tmp), mode="w", format="gif") as container:
      stream = container.add_stream("gif", rate=fps)
      stream.width, stream.height = w, h
      stream.pix_fmt = "pal8"
      for frame in video:
        for packet in stream.encode(_palette_frame(frame)):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
  return storage.path(path)


def frame_strip(videos: np.ndarray, scale: int = 1, gap: int = 1) -> np.ndarray:
  """(K, N, H, W, 3) or (N, H, W, 3) uint8 -> one image: a row of frames per video."""
  videos = np.asarray(videos)
  if videos.ndim == 4:
    videos = videos[None]
  k, n, h, w, c = videos.shape
  canvas = np.full((k * (h + gap) - gap, n * (w + gap) - gap, c), 255, np.uint8)
  for i in range(k):
    for j in range(n):
      canvas[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = videos[i, j]
  if scale > 1:
    canvas = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
  return canvas


def write_png(path: str | os.PathLike, image: np.ndarray) -> epath.Path:
  with _atomic(path) as tmp:
    Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format="PNG")
  return storage.path(path)


@contextlib.contextmanager
def open_video(path: str | os.PathLike):
  """A PyAV container reading `path`: a local file by name, a `gs://` object through a
  file object (fsspec fetches it in blocks as ffmpeg reads and seeks: no copy on disk
  to clean up after a kill, and grain's workers need no scratch space)."""
  if storage.is_remote(path):
    with storage.path(path).open("rb") as f, av.open(f) as container:
      yield container
  else:
    with av.open(os.fspath(path)) as container:
      yield container


def read_video(path: str | os.PathLike) -> np.ndarray:
  """Decode every frame of a video file -> uint8 (N, H, W, 3)."""
  path = storage.path(path)
  if not path.is_file():
    raise FileNotFoundError(f"video file {path} does not exist")
  try:
    with open_video(path) as container:
      frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
  except (av.error.FFmpegError, ValueError) as e:
    raise ValueError(f"cannot decode video file {path}: {e}") from e
  if not frames:
    raise ValueError(f"video file {path} holds no frames")
  return np.stack(frames)


class Mp4Stream:
  """An mp4 written frame batch by frame batch, so a long video never sits in memory.

  Same encoding as `write_mp4`; the file appears under its final name only when the
  stream closes without error (a crash leaves no half-written video).

    with Mp4Stream("long.mp4", fps=8) as out:
      for frames in windows:            # uint8 (n, H, W, 3) each
        out.write(frames)
  """

  def __init__(self, path: str | os.PathLike, fps: int = 8):
    self.path, self.fps, self.num_frames = storage.path(path), fps, 0
    self._atomic = _atomic(self.path)
    self._tmp = self._atomic.__enter__()
    self._container = av.open(str(self._tmp), mode="w")
    self._stream = None

  def write(self, frames: np.ndarray) -> None:
    frames = _check_video(frames)
    if self._stream is None:
      self._stream = self._container.add_stream("libx264", rate=self.fps)
      self._stream.height, self._stream.width = frames.shape[1:3]
      self._stream.pix_fmt = "yuv444p"
      self._stream.options = {"crf": "10"}
    elif (self._stream.height, self._stream.width) != frames.shape[1:3]:
      raise ValueError(
        f"frames of {frames.shape[1:3]}; {self.path} holds "
        f"{(self._stream.height, self._stream.width)} frames"
      )
    for frame in frames:
      for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        self._container.mux(packet)
    self.num_frames += len(frames)

  def close(self, error: BaseException | None = None) -> epath.Path:
    """Finish the file (or, after `error`, remove the partial one); return the path."""
    empty = error is None and self._stream is None
    if empty:
      error = ValueError(f"no frames were written to {self.path}")
    try:
      if error is None:
        for packet in self._stream.encode():
          self._container.mux(packet)
    except BaseException as e:
      error = e
      raise
    finally:
      self._container.close()
      self._atomic.__exit__(
        *((None, None, None) if error is None else (type(error), error, error.__traceback__))
      )
    if empty:
      raise error
    return self.path

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    self.close(exc)
    return False
