"""Real footage made at test time: photographs that scikit-image ships, filmed by a camera
moving along a known path, encoded with real codecs (PyAV) at chosen sizes, frame rates
and lengths, with an optional scene cut to a second photograph.

The camera's position is a function of time, not of frame number, so files at 24, 25
and 29.97 fps film the same scene: the frame at time t of any of them is `render(t)`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

NTSC = Fraction(30000, 1001)  # 29.97 fps
SPEED = 40  # camera pixels per second, along x; y moves at a third of it

# container suffix -> (codec, pixel format): x264 in 4:4:4 takes odd sizes; mpeg4 in AVI
# is UCF101's kind of file; VP9 and VP8 in webm, whose container reports no frame count.
CODECS = {
  "mp4": ("libx264", "yuv444p"),
  "avi": ("mpeg4", "yuv420p"),
  "webm": ("libvpx-vp9", "yuv420p"),
  "vp8.webm": ("libvpx", "yuv420p"),
  "mkv": ("libx264", "yuv444p"),
}


def photograph(name: str = "coffee", height: int = 120) -> np.ndarray:
  """A photograph from skimage.data (astronaut, coffee, chelsea, rocket ...), resized to
  `height` rows, uint8 (height, W, 3)."""
  from skimage import data

  picture = getattr(data, name)()
  if picture.ndim == 2:
    picture = np.repeat(picture[..., None], 3, axis=-1)
  width = round(picture.shape[1] * height / picture.shape[0])
  return np.asarray(Image.fromarray(picture[..., :3]).resize((width, height), Image.BILINEAR))


def _bounce(distance: float, room: int) -> int:
  """Position after moving `distance` pixels back and forth over 0..room."""
  d = int(round(distance)) % (2 * room)
  return d if d <= room else 2 * room - d


def render(t: Fraction | float, size: tuple[int, int], picture: np.ndarray) -> np.ndarray:
  """The camera's (h, w) view of `picture` at time t seconds."""
  h, w = size
  x = _bounce(SPEED * t, picture.shape[1] - w)
  y = _bounce(SPEED * t / 3, picture.shape[0] - h)
  return picture[y : y + h, x : x + w]


def film(
  num_frames: int,
  rate: Fraction | int,
  size: tuple[int, int],
  *,
  photo: str = "coffee",
  cut_at: int | None = None,
  second_photo: str = "rocket",
) -> np.ndarray:
  """(num_frames, h, w, 3) uint8: frame k shows time k / rate; from frame `cut_at` on,
  the camera films `second_photo` instead (a scene cut)."""
  first = photograph(photo)
  second = photograph(second_photo) if cut_at is not None else None
  frames = [
    render(Fraction(k) / Fraction(rate), size, first if cut_at is None or k < cut_at else second)
    for k in range(num_frames)
  ]
  return np.stack(frames)


def encode(
  path: str | Path,
  frames: np.ndarray,
  rate: Fraction | int,
  kind: str = "mp4",
  gop: int | None = None,
  bframes: int | None = None,
) -> Path:
  """Write `frames` at `rate` fps as `kind` (a key of CODECS) with a keyframe at most every
  `gop` frames (None: the codec's default; x264 also cuts a GOP at a scene change) and
  `bframes` B-frames in a row (None: the codec's default; x264's is 3, mpeg4's 0)."""
  codec, pix_fmt = CODECS[kind]
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  n, h, w, _ = frames.shape
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream(codec, rate=Fraction(rate))
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    options = {"crf": "18"} if codec == "libx264" else {}
    if gop is not None:
      options["g"] = str(gop)
    if bframes is not None:
      options["bf"] = str(bframes)
    if codec == "mpeg4":
      stream.bit_rate = 4_000_000
    stream.options = options
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path
