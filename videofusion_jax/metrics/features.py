"""Feature extraction over a stream of video batches, and the on-disk feature cache.

A `FeatureExtractor` is a named, jitted function from uint8 videos (B, N, H, W, 3) to
features (B, D) that always sees the same batch size: the last, partial batch is padded
(by repeating its last video) and the padding is dropped, so one compile serves a whole
evaluation. Several extractors (I3D for FVD/KVD, C3D for IS) share one pass over the
videos, which matters when the videos are being sampled. Features are accumulated on the
host, so 2048+ videos never sit on the device at once.

The cache stores the features of a fixed (dataset, protocol, extractor) as
`<cache_dir>/<name>-<hash>.npz` with the settings beside it as `.json`; the hash covers
every setting, so changing any of them computes (and stores) a new set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
from absl import logging

from videofusion_jax import storage


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """`apply(uint8 (batch_size, N, H, W, 3)) -> (batch_size, D)`, plus its protocol."""

  name: str  # e.g. "i3d-kinetics-400 logits"
  apply: Callable[[np.ndarray], Any]
  batch_size: int
  num_frames: int | None = None  # clip length the protocol needs (None: any)
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # JSON-able

  def describe(self) -> dict:
    return {"name": self.name, "num_frames": self.num_frames, **dict(self.settings)}


def fit_clip_length(
  videos: np.ndarray, num_frames: int | None, *, what: str, noted: set | None = None
) -> np.ndarray:
  """First `num_frames` frames of longer clips (logged once); shorter ones are an error."""
  if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
    raise ValueError(
      f"{what}: videos of shape {videos.shape} dtype {videos.dtype}; expected uint8 (B, N, H, W, 3)"
    )
  if num_frames is None or videos.shape[1] == num_frames:
    return videos
  if videos.shape[1] < num_frames:
    raise ValueError(
      f"{what}: clips of {videos.shape[1]} frames; the protocol needs "
      f"{num_frames} frames (B, {num_frames}, H, W, 3)"
    )
  if noted is not None and what not in noted:
    noted.add(what)
    logging.warning(
      "%s: clips have %d frames; using the first %d (the protocol's length)",
      what,
      videos.shape[1],
      num_frames,
    )
  return videos[:, :num_frames]


def extract(
  extractors: Mapping[str, FeatureExtractor],
  batches: Iterable[np.ndarray],
  *,
  what: str,
  progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
  """Run every extractor over every batch of uint8 videos -> {name: (n, D) float32}."""
  out: dict[str, list[np.ndarray]] = {k: [] for k in extractors}
  noted: set = set()
  done = 0
  for videos in batches:
    videos = np.asarray(videos)
    for key, ex in extractors.items():
      clips = fit_clip_length(videos, ex.num_frames, what=what, noted=noted)
      for start in range(0, len(clips), ex.batch_size):
        chunk = clips[start : start + ex.batch_size]
        n = len(chunk)
        if n < ex.batch_size:
          chunk = np.concatenate([chunk, np.repeat(chunk[-1:], ex.batch_size - n, axis=0)])
        out[key].append(np.asarray(ex.apply(chunk), np.float32)[:n])
    done += len(videos)
    if progress is not None:
      progress(done)
  return {k: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for k, v in out.items()}


def settings_hash(settings: Mapping[str, Any]) -> str:
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class FeatureCache:
  """`<directory>/<name>-<hash of settings>.npz` (+ `.json` with the settings)."""

  directory: str

  def path(self, name: str, settings: Mapping[str, Any]) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
    return storage.path(self.directory) / f"{safe}-{settings_hash(settings)}.npz"

  def load(self, name: str, settings: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    path = self.path(name, settings)
    if not path.is_file():
      return None
    with path.open("rb") as f, np.load(f) as data:
      feats = {k: data[k] for k in data.files}
    logging.info("Loaded cached features from %s", path)
    return feats

  def save(self, name: str, settings: Mapping[str, Any], feats: Mapping[str, np.ndarray]) -> Path:
    path = self.path(name, settings)
    with storage.local_then_upload(path) as tmp:  # local: a temporary name, renamed
      np.savez(tmp, **feats)
    storage.write_bytes(
      path.with_suffix(".json"),
      (json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n").encode(),
    )
    return path
