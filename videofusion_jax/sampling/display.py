"""Videos inline in a notebook: HTML5 `<video>` elements holding base64 H.264 mp4s.

The mp4 files the CLIs write are yuv444p (exact colours for small frames), which most
browsers will not play, and a 16x16 video is too small to see. Here each video is
enlarged by whole-pixel repetition (no blurring) and encoded as yuv420p H.264, which
every browser (and Colab's output frame) plays, straight into the page: no file, no
ffmpeg binary, only PyAV.

  from videofusion_jax.sampling import display
  display.show_videos(videos, titles=["seed 0", "seed 1"], fps=8)   # (K, N, H, W, 3)
  display.show_images(images)                                        # (K, H, W, 3): PNGs
"""

from __future__ import annotations

import base64
import html
import io
from typing import Sequence

import av
import numpy as np
from PIL import Image

from videofusion_jax.data import video_io

MIN_SIDE = 128  # default enlargement: the smaller side becomes at least this many pixels


def _as_videos(videos) -> np.ndarray:
  """uint8 or [-1, 1] float (K, N, H, W, C) / (N, H, W, C) -> uint8 (K, N, H, W, 3)."""
  videos = np.asarray(videos)
  if videos.ndim == 4:
    videos = videos[None]
  if videos.ndim != 5 or videos.shape[-1] not in (1, 3):
    raise ValueError(
      f"videos have shape {videos.shape}; expected (K, N, H, W, C) or (N, H, W, C) with C in (1, 3)"
    )
  if videos.dtype != np.uint8:
    if not np.issubdtype(videos.dtype, np.floating):
      raise ValueError(f"videos have dtype {videos.dtype}; expected uint8 or floats in [-1, 1]")
    videos = video_io.to_uint8(videos)
  return np.repeat(videos, 3, axis=-1) if videos.shape[-1] == 1 else videos


def default_scale(height: int, width: int) -> int:
  """Whole-pixel enlargement that makes the smaller side at least `MIN_SIDE` pixels."""
  return max(1, -(-MIN_SIDE // min(height, width)))


def enlarge(video: np.ndarray, scale: int) -> np.ndarray:
  """uint8 (N, H, W, 3) -> (N, H', W', 3): each pixel a `scale` x `scale` block, then
  padded by one black row/column where needed (yuv420p wants even sides)."""
  if scale < 1:
    raise ValueError(f"scale={scale}; expected an integer >= 1")
  video = np.repeat(np.repeat(video, scale, axis=1), scale, axis=2)
  pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
  return np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))


def mp4_bytes(video, *, fps: int = 8, scale: int | None = None) -> bytes:
  """One video (N, H, W, C), uint8 or floats in [-1, 1] -> a browser-playable mp4."""
  (video,) = _as_videos(video)
  if fps < 1:
    raise ValueError(f"fps={fps}; expected >= 1")
  video = enlarge(video, scale or default_scale(*video.shape[1:3]))
  buffer = io.BytesIO()
  with av.open(buffer, mode="w", format="mp4") as container:
    stream = container.add_stream("libx264", rate=fps)
    stream.height, stream.width = video.shape[1:3]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "12"}
    for frame in video:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return buffer.getvalue()


def video_html(
  videos,
  *,
  titles: Sequence[str] | None = None,
  columns: int | None = None,
  fps: int = 8,
  scale: int | None = None,
) -> str:
  """HTML of a table of looping, autoplaying videos, `columns` per row (default: all)."""
  media = [
    '<video autoplay loop muted playsinline controls src="data:video/mp4;base64,'
    f'{base64.b64encode(mp4_bytes(video, fps=fps, scale=scale)).decode("ascii")}"></video>'
    for video in _as_videos(videos)
  ]
  return _table_html(media, titles, columns, "videos")


def _table_html(media: list[str], titles: Sequence[str] | None, columns: int | None, what: str):
  """A table of the HTML elements `media`, each under its title, `columns` per row."""
  k = len(media)
  if titles is not None and len(titles) != k:
    raise ValueError(f"{len(titles)} titles for {k} {what}; expected one per {what[:-1]}")
  columns = columns or k
  if columns < 1:
    raise ValueError(f"columns={columns}; expected >= 1")
  cells = [
    f'<td style="text-align:center;padding:4px">'
    f"{'' if titles is None else f'<div>{html.escape(str(titles[i]))}</div>'}{m}</td>"
    for i, m in enumerate(media)
  ]
  rows = ["<tr>" + "".join(cells[i : i + columns]) + "</tr>" for i in range(0, k, columns)]
  return "<table>" + "".join(rows) + "</table>"


def png_bytes(image, *, scale: int | None = None) -> bytes:
  """One image (H, W, C), uint8 or floats in [-1, 1] -> PNG bytes, enlarged like videos."""
  ((image,),) = _as_videos(np.asarray(image)[None])
  buffer = io.BytesIO()
  Image.fromarray(enlarge(image[None], scale or default_scale(*image.shape[:2]))[0]).save(
    buffer, format="PNG"
  )
  return buffer.getvalue()


def image_html(
  images, *, titles: Sequence[str] | None = None, columns: int | None = None, scale=None
) -> str:
  """HTML of a table of images (K, H, W, C), `columns` per row (default: all)."""
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images have shape {images.shape}; expected (K, H, W, C)")
  media = [
    f'<img src="data:image/png;base64,{base64.b64encode(png_bytes(i, scale=scale)).decode()}">'
    for i in images
  ]
  return _table_html(media, titles, columns, "images")


def show_images(images, **kwargs) -> None:
  """Display `image_html(images, **kwargs)` in the running notebook (IPython)."""
  from IPython.display import HTML, display  # only in a notebook

  display(HTML(image_html(images, **kwargs)))


def show_videos(videos, **kwargs) -> None:
  """Display `video_html(videos, **kwargs)` in the running notebook (IPython)."""
  from IPython.display import HTML, display  # only in a notebook

  display(HTML(video_html(videos, **kwargs)))
