"""Reading only a clip's window of a video: the cost of a clip does not grow with the
video's length.

A video file is opened once per clip. Its frame count comes from the container
(`stream.frames`; webm, mkv and GIF report none, so their video packets are counted:
the file is read but nothing is decoded, once per file and source). To read frames
`first .. last` the reader seeks to the keyframe at or before `first` and decodes
forward until `last`: at most a group of pictures more than the window. Frames are
identified by their timestamps (frame k of a constant-rate stream has time k / rate),
so a seek gives the pixels a decode from the start gives (tests/data/test_window_reader.py
checks mp4 and mkv/h264, avi/mpeg4 with and without B-frames, webm/vp9 and vp8 frame by
frame). Only the frames asked for are converted to RGB arrays.

A frame folder (numbered images) opens only the window's files; it has no timestamps.

A `gs://` video is read through a file object (`video_io.open_video`), which PyAV seeks
like a local file (it has `seek` and `tell`): a clip decodes the same frames as from a
local copy, and fetches only the blocks gcsfs reads around the header and the window (5
MiB each), not the whole file (tests/gcs/test_storage.py checks mp4, mkv, avi with
B-frames, webm and GIF). The packet count of a webm, mkv or GIF reads the file whole,
once per file and source. A frame folder on GCS is listed once (by the caller's
listing, or here) and only the window's images are fetched.

Every read returns what it cost (`Window.decoded`, `Window.peak_bytes`), which the
folder source sums into its `DecodeStats` and tests and benchmarks read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np
from PIL import Image

from videofusion_jax import storage
from videofusion_jax.data.video_io import open_video

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FRAME_NUMBER = re.compile(r"\d+$")
# Containers whose seeking is by byte offset or not at all: decoded from the start.
_NO_SEEK_FORMATS = ("gif",)


def frame_files(folder: Path) -> list[Path]:
  """The images of `folder` named with a trailing frame number (`000001.jpg`,
  `x_frames_0002.png`), in frame order (by number, so unpadded `img_10` follows `img_9`)."""
  return numbered_frames(folder.iterdir())


def numbered_frames(paths) -> list[Path]:
  """`frame_files` of one folder's listing (on GCS, a part of one listing of a prefix)."""
  numbered = [
    (p, _FRAME_NUMBER.search(p.stem))
    for p in paths
    if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".")
  ]
  numbered = [(p, m) for p, m in numbered if m]
  return [
    p
    for p, m in sorted(
      numbered, key=lambda pm: (pm[0].stem[: pm[1].start()], int(pm[1].group()), pm[0].name)
    )
  ]


@dataclasses.dataclass
class Window:
  """Frames read from one video, with what reading them cost."""

  frames: list[np.ndarray]  # uint8 (H, W, 3) each, in the order asked for
  times: list[Fraction] | None  # seconds from the video's first frame (None: frames)
  decoded: int  # frames the decoder produced (or images opened)
  peak_bytes: int  # RGB array bytes held at once while reading


@dataclasses.dataclass
class DecodeStats:
  """Totals over the clips a source read in this process (grain worker processes keep
  their own)."""

  clips: int = 0
  decoded_frames: int = 0
  decoded_bytes: int = 0  # decoded frames x their RGB size (H * W * 3)
  peak_bytes: int = 0  # the most RGB array bytes one clip held at once

  def add(self, window: Window, frame_bytes: int) -> None:
    self.clips += 1
    self.decoded_frames += window.decoded
    self.decoded_bytes += window.decoded * frame_bytes
    self.peak_bytes = max(self.peak_bytes, window.peak_bytes)


def _round_half_up(x: Fraction) -> int:
  return math.floor(x + Fraction(1, 2))


def count_packets(path: str | Path) -> int:
  """Video packets holding data in `path`: its frame count when the container does not
  say (webm, mkv, GIF), found without decoding."""
  with open_video(path) as container:
    stream = container.streams.video[0]
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


class VideoReader:
  """One open video file or frame folder.

    with VideoReader(path) as video:          # video.num_frames, video.rate
      window = video.read([10, 12, 14])        # frames 10, 12 and 14

  `num_frames` may be given when known from before (a packet count cached by the
  caller), so a container that does not report it is not counted again. `is_folder` and
  `frames` may be given when a listing already said what `path` is (a frame folder, and
  its `numbered_frames`): on GCS that saves a request per clip, and a folder's listing.
  """

  def __init__(
    self,
    path: str | Path,
    num_frames: int | None = None,
    *,
    is_folder: bool | None = None,
    frames: Sequence[Path] | None = None,
  ):
    self.path = storage.path(path) if storage.is_remote(path) else Path(path)
    self._container = None
    if is_folder is None:
      is_folder = self.path.is_dir()
      if not is_folder and not self.path.is_file():
        raise FileNotFoundError(f"video file {self.path} does not exist")
    if is_folder:
      self._files = list(frame_files(self.path) if frames is None else frames)
      self.num_frames, self.rate, self.counted = len(self._files), None, False
      return
    self._open = contextlib.ExitStack()  # a remote file's file object, then its container
    self._container = self._open.enter_context(open_video(self.path))
    try:
      self._init_stream(num_frames)
    except BaseException:
      self.close()
      raise

  def _init_stream(self, num_frames: int | None) -> None:
    if not self._container.streams.video:
      raise ValueError(f"{self.path} holds no video stream")
    self._stream = self._container.streams.video[0]
    rate = self._stream.average_rate or self._stream.guessed_rate
    self.rate = Fraction(rate) if rate else None
    self._time_base = Fraction(self._stream.time_base)
    # Frame 0's timestamp: the first packet's (an AVI with B-frames starts at 1 while its
    # stream.start_time says 0).
    first_packet = next((p for p in self._container.demux(self._stream) if p.pts is not None), None)
    self._start = first_packet.pts if first_packet is not None else 0
    self._decoding_started = first_packet is not None  # the demuxer has moved on
    self._seekable = (
      self.rate is not None
      and first_packet is not None
      and self._container.format.name not in _NO_SEEK_FORMATS
    )
    self._decoded = 0
    self.counted = False  # True when num_frames came from a packet count here
    if num_frames is None:
      num_frames = self._stream.frames
      if not num_frames:
        num_frames, self.counted = count_packets(self.path), True
    self.num_frames = int(num_frames)

  def close(self) -> None:
    if self._container is not None:
      self._open.close()
      self._container = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False

  @property
  def has_times(self) -> bool:
    return self._container is not None and self.rate is not None

  def read(self, indices: Sequence[int]) -> Window:
    """Frames `indices` (ascending, repeats allowed), read from the keyframe before the
    first to the last."""
    indices = list(indices)
    if not indices or any(b < a for a, b in zip(indices, indices[1:])):
      raise ValueError(f"frame indices {indices} of {self.path}; expected ascending")
    if indices[0] < 0 or indices[-1] >= self.num_frames:
      raise ValueError(
        f"{self.path} has {self.num_frames} frames; asked for frames {indices[0]} .. {indices[-1]}"
      )
    if self._container is None:
      return self._read_images(indices)
    wanted = set(indices)
    by_index: dict[int, tuple[np.ndarray, Fraction]] = {}
    self._decoded = held = peak = 0
    for index, time, frame in self._frames_from(indices[0]):
      if index in wanted and index not in by_index:
        array = frame.to_ndarray(format="rgb24")
        by_index[index] = (array, time)
        held += array.nbytes
        peak = max(peak, held)
      if index >= indices[-1]:
        break
    missing = sorted(wanted - set(by_index))
    if missing:
      raise ValueError(
        f"{self.path} ended before frame {missing[0]} (its container says {self.num_frames} frames)"
      )
    return Window(
      [by_index[i][0] for i in indices], [by_index[i][1] for i in indices], self._decoded, peak
    )

  def read_at_times(self, first: int, step: Fraction, count: int) -> Window:
    """`count` frames nearest the times t0 + k * step (seconds), t0 the timestamp of
    frame `first`: for each target the frame whose timestamp is closest (the earlier on
    a tie). Decided as frames stream past, so one frame at most waits undecided."""
    if not self.has_times:
      raise ValueError(
        f"{self.path} has no frame timestamps (a frame folder); data.fps needs video files"
      )
    if not 0 <= first < self.num_frames:
      raise ValueError(f"{self.path} has {self.num_frames} frames; asked for frame {first}")
    frames: list[np.ndarray] = []
    times: list[Fraction] = []
    self._decoded = held = peak = 0

    def take(time, frame):
      nonlocal held, peak
      frames.append(frame.to_ndarray(format="rgb24"))
      times.append(time)
      held += frames[-1].nbytes
      peak = max(peak, held)

    previous = None  # (time, frame) of the frame before the current one
    for index, time, frame in self._frames_from(first):
      if index < first:
        continue
      if time is None:
        raise ValueError(f"{self.path}: a frame without a timestamp; data.fps needs them")
      t0 = times[0] if times else time
      while len(frames) < count and time >= t0 + len(frames) * step:
        target = t0 + len(frames) * step
        if previous is not None and target - previous[0] <= time - target:
          take(*previous)
        else:
          take(time, frame)
      if len(frames) == count:
        break
      previous = (time, frame)
    while previous is not None and 0 < len(frames) < count:  # past the end: the last is
      take(*previous)  # the nearest frame
    if len(frames) < count:
      raise ValueError(f"{self.path} ended before frame {first}")
    return Window(frames, times, self._decoded, peak)

  def _frames_from(self, first: int) -> Iterator[tuple[int, Fraction | None, av.VideoFrame]]:
    """(index, time, frame) of each frame decoded to reach `first` and beyond: from the
    keyframe at or before `first`, or from the start where the container cannot seek by
    timestamp. Counts every decoded frame in `self._decoded`."""
    seek_to = first if self._seekable else 0
    while True:
      frames = self._decode_from(seek_to)
      head = next(frames, None)
      if head is None:
        return
      if head[0] <= first or seek_to == 0:
        break
      # Landed past `first`: AVI indexes keyframes by decode time, which B-frames put
      # before their display time. Seek again, further back each time.
      seek_to = max(0, seek_to - 2 * (head[0] - seek_to + 1))
    yield head
    yield from frames

  def _decode_from(self, seek_to: int) -> Iterator[tuple[int, Fraction | None, av.VideoFrame]]:
    if seek_to > 0:
      # A quarter frame late: frame `seek_to`'s stored timestamp may be rounded up to the
      # container's time base (webm keeps milliseconds), and a target before it would
      # land on the keyframe before a keyframe at `seek_to` (a GOP more to decode).
      target = Fraction(4 * seek_to + 1, 4) / self.rate / self._time_base + self._start
      self._container.seek(math.floor(target), stream=self._stream, backward=True, any_frame=False)
    elif self._decoding_started:
      self._container.seek(0)
    self._decoding_started = True
    for sequence, frame in enumerate(self._container.decode(self._stream)):
      self._decoded += 1
      time = None if frame.pts is None else (frame.pts - self._start) * self._time_base
      if seek_to == 0:
        index = sequence  # exact whatever the timestamps (GIF's own delays)
      elif time is None:
        raise ValueError(
          f"{self.path}: a frame without a timestamp after seeking to frame {seek_to}"
        )
      else:
        index = _round_half_up(time * self.rate)  # frame k of a constant-rate stream
      yield index, time, frame

  def _read_images(self, indices: list[int]) -> Window:
    arrays = {i: _read_image(self._files[i]) for i in sorted(set(indices))}
    return Window(
      [arrays[i] for i in indices], None, len(arrays), sum(a.nbytes for a in arrays.values())
    )


def _read_image(path: Path) -> np.ndarray:
  """uint8 (H, W, 3) of one image file; a `gs://` one fetched whole in one request."""
  if storage.is_remote(path):
    return np.asarray(Image.open(io.BytesIO(storage.path(path).read_bytes())).convert("RGB"))
  return np.asarray(Image.open(path).convert("RGB"))
