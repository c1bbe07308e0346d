"""WebVid-10M: its metadata CSV plus the videos downloaded next to it, with captions.

The CSV (`results_10M_train.csv`, `results_2M_val.csv`) has a row per video:
`videoid, contentUrl, duration, page_dir, name` (`name` is the caption). Nothing is
downloaded here: videos are read from `data.path` at `data.webvid_template`
(default `{page_dir}/{videoid}.mp4`, the layout of the dataset's own download
script). Rows whose file is absent, or that lack a video id, are skipped and counted,
so a partial download trains on what is there. The CSV and the videos may be on GCS
(`gs://...`): the videos present are then found by one listing of `data.path`, not a
request per row.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import numpy as np
from absl import logging

from videofusion_jax import storage
from videofusion_jax.data.folders import VideoFolder

REQUIRED_COLUMNS = ("videoid", "name")
DEFAULT_TEMPLATE = "{page_dir}/{videoid}.mp4"


@dataclasses.dataclass(frozen=True)
class WebVidRows:
  """What a CSV gave: the videos present and what was skipped, with an example each."""

  paths: list[Path]
  captions: list[str]
  keys: list[str]
  absent: int = 0
  bad: int = 0
  first_absent: str = ""
  first_bad: str = ""


def read_webvid_csv(
  csv_path: str | Path, videos_dir: str | Path, template: str = DEFAULT_TEMPLATE
) -> WebVidRows:
  """Rows of a WebVid CSV whose video exists under `videos_dir`."""
  storage.check_reachable(csv_path, "data.webvid_csv")
  storage.check_reachable(videos_dir, "data.path")
  remote = storage.is_remote(videos_dir)
  csv_path = storage.path(csv_path)
  videos_dir = storage.path(videos_dir) if remote else Path(videos_dir)
  if not csv_path.is_file():
    raise FileNotFoundError(
      f"data.webvid_csv={csv_path} does not exist; put WebVid's "
      "results_10M_train.csv (or results_2M_val.csv) there"
    )
  if not videos_dir.is_dir():
    raise FileNotFoundError(
      f"data.path={videos_dir} does not exist or is not a folder"
      f"{storage.missing_folder_hint(videos_dir)}; put the "
      f"downloaded videos there as {template}"
    )
  # On GCS a request per row (10M rows) would take hours: list what is there once.
  present = set(storage.list_files(videos_dir)) if remote else None
  paths, captions, keys = [], [], []
  absent = bad = 0
  first_absent = first_bad = ""
  with _open_csv(csv_path) as f:
    reader = csv.DictReader(f)
    columns = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
      raise ValueError(
        f"{csv_path} lacks the column(s) {missing}; WebVid CSVs have "
        f"videoid, contentUrl, duration, page_dir, name; found {columns}"
      )
    for line, row in enumerate(reader, start=2):
      videoid = (row.get("videoid") or "").strip()
      if not videoid or None in row:  # no id, or more fields than the header
        bad += 1
        first_bad = first_bad or f"line {line}"
        continue
      try:
        relative = template.format(**{k: (v or "").strip() for k, v in row.items()})
      except KeyError as e:
        raise ValueError(
          f"data.webvid_template={template!r} names the column {e}, which "
          f"{csv_path} does not have ({columns})"
        ) from None
      path = videos_dir / relative
      if not (path.is_file() if present is None else path in present):
        absent += 1
        first_absent = first_absent or str(path)
        continue
      paths.append(path)
      captions.append((row.get("name") or "").strip())
      keys.append(videoid)
  return WebVidRows(paths, captions, keys, absent, bad, first_absent, first_bad)


def _open_csv(path):
  """Text as the csv module wants it (newline="": quoted fields may hold newlines)."""
  if storage.is_remote(path):
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8", newline="")
  return open(path, newline="", encoding="utf-8")


@dataclasses.dataclass
class WebVidSource(VideoFolder):
  """Clips of the WebVid videos present locally, each with its caption and video id.

  Items: {"video": (N, H, W, 3) float32 in [-1, 1], "label": 0, "caption": str,
  "key": videoid}. Decoding, clip choice and skipping of unreadable files are
  `VideoFolder`'s.
  """

  csv_path: str = ""
  template: str = DEFAULT_TEMPLATE

  def __post_init__(self):
    rows = read_webvid_csv(self.csv_path, self.root, self.template)
    total = len(rows.paths) + rows.absent + rows.bad
    if rows.absent or rows.bad:
      logging.warning(
        "WebVid %s: %d of %d rows used; %d skipped for an absent video "
        "(first: %s), %d for a bad row (first: %s)",
        self.csv_path,
        len(rows.paths),
        total,
        rows.absent,
        rows.first_absent or "-",
        rows.bad,
        rows.first_bad or "-",
      )
    if not rows.paths:
      raise ValueError(
        f"none of the {total} rows of {self.csv_path} has its video under "
        f"data.path={self.root} (expected e.g. {rows.first_absent or '-'})"
      )
    self.paths, self.captions, self.keys = rows.paths, rows.captions, rows.keys
    self.rows = rows
    self.classes, self.labels = [], [0] * len(self.paths)
    # On GCS every row's video is a file of the listing: no request asks what it is.
    self.frame_folders = {} if storage.is_remote(self.root) else None
    self._init_reading()

  def entries(self, index: int) -> dict:
    return {"label": np.int32(0), "caption": self.captions[index], "key": self.keys[index]}
