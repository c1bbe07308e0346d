"""Clips from a folder of videos (mp4/avi/webm/mov/mkv/gif) or of frame folders, local
or on GCS (`data.path=gs://bucket/videos`: listed in one request, each video read
through a file object, `storage.py`).

  root/                       root/
    class_a/clip1.mp4           clip1/000001.jpg ...
    class_b/clip2.avi           clip2/000001.jpg ...

One entry per video: files of one stem in one folder (`clip1.mp4`, `clip1.gif`, as the
sample CLI writes them) are one video, read from its best copy (see `PREFERENCE`). A frame
folder holds at least two images numbered as a sequence, so a folder that merely holds a
picture (the sample CLI's `strip.png`) is not a video. Hidden files (`.x.tmp.mp4` left by
a killed writer, macOS `._x.mp4`) are not videos.

Labels are the sorted names of the first-level sub-folders (0 without sub-folders).
A clip is `num_frames` frames `frame_stride` apart, or, with `fps`, the frames whose
timestamps are nearest t0 + k / fps (a clip lasts num_frames / fps seconds whatever the
file's frame rate), resized so the short side is `image_size` and centre-cropped. Only
the window is decoded (`window_reader.py`). It is the centre window of the video, or, with
`random_start`, a window drawn anew for every epoch from (seed, epoch, index), its start
uniform over all starts that fit: a long video is seen whole over the epochs, and a
resumed run reads the windows the uninterrupted one would have. `item_at_epoch` is how
the input pipeline asks a source for epoch `e`'s item; `source[i]` is epoch 0's. Files
that fail to decode, or are shorter than a clip, are skipped with a logged warning
naming them; the next clip is returned instead (with `fps`, also frame folders, which
have no timestamps).
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from absl import logging
from PIL import Image

from videofusion_jax import storage
from videofusion_jax.data.locked_source import LockedSource
from videofusion_jax.data.window_reader import (
  FRAME_EXTENSIONS,
  DecodeStats,
  VideoReader,
  Window,
  frame_files,
  numbered_frames,
)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".gif")


# Which copy of a video is read when several share a stem: real video containers first
# (mp4 is what the sample CLI writes at crf 10), then lossless frame folders, and GIF last
# (256-colour palette per frame).
PREFERENCE = (".mp4", ".webm", ".mkv", ".mov", ".avi", "frames", ".gif")


def _is_frame_folder(path: Path) -> bool:
  return path.is_dir() and len(frame_files(path)) >= 2


def _is_folder(path: Path, folders: dict | None) -> bool:
  """Whether `path` is a frame folder: from `folders` when the listing gave them (GCS:
  no request per path), else asked of the file system."""
  return path in folders if folders is not None else path.is_dir()


def _kind(path: Path, folders: dict | None = None) -> str:
  return "frames" if _is_folder(path, folders) else path.suffix.lower()


def _video_candidates(root: Path) -> list[Path]:
  """Every video file and frame folder under `root`, copies of one video included."""
  found = [
    p
    for p in root.rglob("*")
    if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")
  ]
  found += [p for p in [root, *root.rglob("*")] if _is_frame_folder(p)]
  return found


def _remote_candidates(root) -> tuple[list, dict]:
  """`_video_candidates` of a `gs://` folder from one listing of every object under it
  (GCS has no folders to walk): (candidates, {frame folder: its numbered images}; a
  candidate that is not a key is a file)."""
  files = storage.list_files(root)
  found = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")]
  by_folder: dict = {}
  for p in files:
    by_folder.setdefault(p.parent, []).append(p)
  folders = {
    d: frames for d, names in by_folder.items() if len(frames := numbered_frames(names)) >= 2
  }
  return found + sorted(folders), folders


def one_per_video(paths: list[Path], folders: dict | None = None) -> list[Path]:
  """The best copy (by `PREFERENCE`) of each (folder, stem), sorted. `folders`: which
  paths are frame folders, when known (else each path is asked)."""
  best: dict[tuple[Path, str], Path] = {}
  for path in paths:
    key = (path.parent, path.name if _is_folder(path, folders) else path.stem)
    if key not in best or (
      PREFERENCE.index(_kind(path, folders)) < PREFERENCE.index(_kind(best[key], folders))
    ):
      best[key] = path
  return sorted(best.values())


def find_videos(root: Path) -> list[Path]:
  """One path per video under `root` (a file or a frame folder), sorted (the order
  defines indices)."""
  if storage.is_remote(root):
    return one_per_video(*_remote_candidates(root))
  return one_per_video(_video_candidates(root))


def _keep_listed(paths: list[Path], root: Path, split_file: Path) -> list[Path]:
  """Videos named in a split list: one relative path per line, optionally followed by a
  label (UCF101's `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`)."""
  if not split_file.is_file():
    raise FileNotFoundError(f"data.split_file={split_file} does not exist")
  listed = {line.split()[0] for line in split_file.read_text().splitlines() if line.strip()}
  kept = [p for p in paths if p.relative_to(root).as_posix() in listed]
  if not kept:
    raise ValueError(
      f"none of the {len(listed)} videos listed in data.split_file="
      f"{split_file} is under data.path={root}"
    )
  return kept


def item_at_epoch(source, index: int, epoch: int) -> dict:
  """Item `index` of `source` as read in pass `epoch` over the data. Sources that cut
  windows from longer videos define `at_epoch(index, epoch)` (a new window each pass);
  any other random-access source has one item per index."""
  at_epoch = getattr(source, "at_epoch", None)
  return source[index] if at_epoch is None else at_epoch(index, epoch)


def window_start(
  num_video_frames: int, span: int, *, random_start: bool, seed: int, epoch: int, index: int
) -> int:
  """First frame of the `span`-frame window of video `index`: the centre one, or one
  drawn from (seed, epoch, index), uniform over 0 .. num_video_frames - span."""
  if not random_start:
    return (num_video_frames - span) // 2
  rng = np.random.default_rng([seed, epoch, index])
  return int(rng.integers(0, num_video_frames - span + 1))


def fps_span(num_frames: int, fps: Fraction, rate: Fraction) -> int:
  """Frames of a `rate` video that a clip of `num_frames` frames at `fps` lasts over
  (num_frames / fps seconds): its window, whose start is drawn like a stride clip's."""
  return math.ceil(num_frames * rate / fps)


def resize_and_crop(frame: np.ndarray, size: int) -> np.ndarray:
  """Short side to `size` (antialiased bilinear), then a centre square crop."""
  h, w = frame.shape[:2]
  scale = size / min(h, w)
  nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
  img = Image.fromarray(frame).resize((nw, nh), Image.BILINEAR)
  top, left = (nh - size) // 2, (nw - size) // 2
  return np.asarray(img)[top : top + size, left : left + size]


@dataclasses.dataclass
class VideoFolder(LockedSource):
  """Random-access source of {"video": (N, H, W, 3) float32 in [-1, 1], "label": int32,
  "key": str}."""

  root: str
  num_frames: int
  image_size: int
  frame_stride: int = 1
  random_start: bool = False
  seed: int = 0
  fps: float | None = None  # frames by timestamp at this rate (None: every frame_stride-th)
  split_file: str = ""  # keep only the videos listed (e.g. UCF101's trainlist01.txt)
  download: str = ""  # where to get the data, said when the folder is missing
  name: str = "data.path"  # what errors call the folder (evaluation: --fake, --real)

  def __post_init__(self):
    remote = storage.is_remote(self.root)
    storage.check_reachable(self.root, self.name)
    root = storage.path(self.root) if remote else Path(self.root)
    if not root.is_dir():
      hint = f" {self.download}" if self.download else ""
      raise FileNotFoundError(
        f"{self.name}={self.root} does not exist or is not a folder"
        f"{storage.missing_folder_hint(root)}; put the videos there (files "
        f"{', '.join(VIDEO_EXTENSIONS)} or folders of frames) or point "
        f"{self.name} at them.{hint}"
      )
    # Which candidates are frame folders, with their images: from the listing on GCS
    # (reading a clip then asks nothing more); locally None, and each path is asked.
    paths, self.frame_folders = (
      _remote_candidates(root) if remote else (_video_candidates(root), None)
    )
    if self.split_file:  # before choosing one copy per video: the list names the copy
      paths = _keep_listed(paths, root, storage.path(self.split_file))
    self.paths = one_per_video(paths, self.frame_folders)
    if not self.paths:
      raise ValueError(
        f"{self.name}={self.root} holds no videos (looked for "
        f"{', '.join(VIDEO_EXTENSIONS)} files and folders of numbered "
        f"{', '.join(FRAME_EXTENSIONS)} frames)"
      )
    classes = sorted(
      {p.relative_to(root).parts[0] for p in self.paths if len(p.relative_to(root).parts) > 1}
    )
    self.classes = classes
    self.labels = [
      classes.index(p.relative_to(root).parts[0]) if len(p.relative_to(root).parts) > 1 else 0
      for p in self.paths
    ]
    self._init_reading()

  def _init_reading(self):
    if self.fps is not None and not self.fps > 0:
      raise ValueError(f"data.fps={self.fps}; expected > 0 (or None: every frame_stride-th frame)")
    LockedSource.__init__(self)
    self.skipped: set[Path] = set()
    self.decode_stats = DecodeStats()
    self._counted_frames: dict[int, int] = {}  # videos whose container gave no count

  def __len__(self) -> int:
    return len(self.paths)

  def clip(self, index: int, epoch: int = 0) -> np.ndarray:
    """uint8 (N, image_size, image_size, 3) of video `index`'s window in pass `epoch`;
    raises ValueError if the video cannot give one."""
    return self.read_clip(index, epoch).frames

  def read_clip(self, index: int, epoch: int = 0) -> Window:
    """`clip`'s frames (stacked, resized) with their timestamps and what reading them
    cost; the cost is added to `decode_stats`."""
    path = self.paths[index]
    folders = getattr(self, "frame_folders", None)  # None: not listed (local, WebVid)
    listed = {} if folders is None else {"is_folder": path in folders, "frames": folders.get(path)}
    try:
      with VideoReader(path, self._counted_frames.get(index), **listed) as video:
        if video.counted:  # webm, mkv, GIF: its packets were counted; once is enough
          self._counted_frames[index] = video.num_frames
        window = self._read_window(video, index, epoch)
    except (av.error.FFmpegError, OSError) as e:
      raise ValueError(f"cannot decode {path}: {e}") from e
    with self._lock:
      self.decode_stats.add(window, window.frames[0].nbytes)
    frames = np.stack([resize_and_crop(f, self.image_size) for f in window.frames])
    return dataclasses.replace(window, frames=frames)

  def _read_window(self, video: VideoReader, index: int, epoch: int) -> Window:
    n = video.num_frames
    if self.fps is None:
      span = (self.num_frames - 1) * self.frame_stride + 1
      if n < span:
        raise ValueError(
          f"{video.path} has {n} frames; a clip needs {span} "
          f"({self.num_frames} frames, stride {self.frame_stride})"
        )
      start = window_start(
        n, span, random_start=self.random_start, seed=self.seed, epoch=epoch, index=index
      )
      return video.read(range(start, start + span, self.frame_stride))
    if not video.has_times:
      raise ValueError(
        f"{video.path} is a frame folder: its frames have no timestamps, "
        f"and data.fps={self.fps} picks frames by time"
      )
    fps = Fraction(repr(float(self.fps)))
    span = fps_span(self.num_frames, fps, video.rate)
    if n < span:
      raise ValueError(
        f"{video.path} lasts {float(n / video.rate):.2f} s ({n} frames at "
        f"{float(video.rate):.3g} fps); a clip needs "
        f"{float(self.num_frames / fps):.2f} s ({self.num_frames} frames at "
        f"data.fps={self.fps})"
      )
    start = window_start(
      n, span, random_start=self.random_start, seed=self.seed, epoch=epoch, index=index
    )
    return video.read_at_times(start, 1 / fps, self.num_frames)

  def entries(self, index: int) -> dict:
    """What an item holds besides its video: the label, and the key (its path under
    the root) that joins it to per-clip caches such as CLIP embeddings."""
    return {
      "label": np.int32(self.labels[index]),
      "key": self.paths[index].relative_to(self.root).as_posix(),
    }

  def __getitem__(self, index: int) -> dict:
    return self.at_epoch(index, 0)

  def at_epoch(self, index: int, epoch: int) -> dict:
    """Item `index` with its window of pass `epoch` (see `clip`); an unreadable video
    is skipped for the next one, read at the same epoch."""
    for offset in range(len(self.paths)):
      i = (index + offset) % len(self.paths)
      try:
        video = self.clip(i, epoch)
      except ValueError as e:
        with self._lock:
          if self.paths[i] not in self.skipped:
            self.skipped.add(self.paths[i])
            logging.warning("Skipping %s (%d skipped so far)", e, len(self.skipped))
        continue
      return {"video": video.astype(np.float32) / 127.5 - 1.0, **self.entries(i)}
    raise ValueError(
      f"no video under {self.name}={self.root} could be read as a clip of "
      f"{self.num_frames} frames; {len(self.skipped)} files skipped"
    )
