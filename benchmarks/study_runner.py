"""A resumable study: runs trained, sampled and scored one at a time, each result kept.

OUT/study.json          the study's settings; a rerun with other settings is refused
OUT/results.jsonl       one JSON line per finished run (`RECORD_KEYS`), appended as it ends
OUT/real_features.npz   the real clips' features and motion, computed once
OUT/runs/RUN_ID/        the run's training workdir (checkpoints: a killed run resumes
                        mid-training), then samples.npz and features.npz

A rerun skips the runs in results.jsonl and resumes the others where they stopped: the
training from its latest checkpoint, sampling and scoring from their files. A budget
(`budget_minutes`) stops the study from *starting* runs once it is spent; the run in
progress finishes. The return code is the CLIs' (`videofusion_jax/cli.py`): DONE when
every run is in results.jsonl, PREEMPTED (75, "rerun me") otherwise, also when SIGTERM
stopped a training run after its checkpoint.

Two kinds of run: "video" (train the config, sample `num_videos` with its EMA weights,
score them: FVD with a bootstrap interval against the real clips, and the samples'
motion) and "image_base" (train, then write the base generator as a folder
`train.init_base_from` reads, `study_image_base.py`); a video run names the image_base run
whose folder starts its base generator (`base_from`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from benchmarks import provenance, study_stats
from benchmarks.study_image_base import export_base
from videofusion_jax import cli, diffusion
from videofusion_jax.data import video_io
from videofusion_jax.metrics import evaluation, fvd, motion
from videofusion_jax.metrics.features import FeatureExtractor, extract
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.sampling import generate
from videofusion_jax.training.loop import outcome, train

RESULTS = "results.jsonl"
SETTINGS = "study.json"
REAL = "real_features.npz"
BASE_UNET = "base_unet"  # an image_base run's exported folder, inside its workdir
KINDS = ("video", "image_base")
# Every record has these; a video run's also has VIDEO_KEYS. Runs add their `describe`.
RECORD_KEYS = (
  "run",
  "kind",
  "seed",
  "train_steps",
  "batch_size",
  "final_loss",
  "seconds",
  "commit",
)
VIDEO_KEYS = ("fvd", "fvd_interval", "motion", "num_videos", "num_real", "extractor", "sampler")
MOTION_KEYS = ("speed", "path_speed", "straightness", "centre_distance", "frame_change")


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One training run of a study and what its record says about it."""

  run_id: str  # its workdir's name and its key in results.jsonl
  seed: int
  config: ml_collections.ConfigDict  # what `train` trains
  kind: str = "video"
  base_from: str = ""  # an image_base run_id: its exported base starts this run's base
  describe: Mapping = dataclasses.field(default_factory=dict)  # copied into the record


@dataclasses.dataclass(frozen=True)
class Status:
  code: int  # cli.DONE or cli.PREEMPTED
  done: int
  total: int


def protocol_length(videos: np.ndarray, num_frames: int | None) -> np.ndarray:
  """Clips shorter than the feature protocol's (I3D: 16 frames) with each frame
  repeated, e.g. 8 frames -> 16 at half the frame rate; the same for real and sampled
  clips, so the comparison stays fair though the numbers are not the 16-frame protocol's."""
  if num_frames is None or videos.shape[1] >= num_frames:
    return videos
  return np.repeat(videos, math.ceil(num_frames / videos.shape[1]), axis=1)[:, :num_frames]


def motion_stats(videos: np.ndarray) -> dict[str, float | None]:
  """The motion columns of a run (uint8 videos): object speed and straightness, how far
  the frames stray from the centre frame, frame change; None where undefined."""
  out = dict(motion.object_motion(videos)._asdict())
  out["centre_distance"] = motion.centre_distance(videos)
  out["frame_change"] = motion.frame_change(videos)
  return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in out.items()}


def check_record(record: Mapping, where: str) -> None:
  """Raise ValueError naming `where` when a record lacks a field of the schema."""
  keys = RECORD_KEYS + (VIDEO_KEYS if record.get("kind") == "video" else ())
  missing = [k for k in keys if k not in record]
  if record.get("kind") not in KINDS:
    raise ValueError(f"{where}: kind={record.get('kind')!r}; expected one of {KINDS}")
  if missing:
    raise ValueError(f"{where}: the record lacks {missing}")
  if record["kind"] == "video":
    lo, hi = record["fvd_interval"]
    if set(record["motion"]) != set(MOTION_KEYS) or not lo <= hi:
      raise ValueError(f"{where}: bad motion keys or fvd_interval {record['fvd_interval']}")


def read_results(out: str | Path) -> dict[str, dict]:
  """run_id -> record of OUT/results.jsonl. A last line cut short (a kill while writing)
  is ignored with a warning: that run counts as not done and runs again."""
  path = Path(out) / RESULTS
  if not path.exists():
    return {}
  lines = path.read_text().splitlines()
  records = {}
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      if i == len(lines) - 1:
        logging.warning("%s: its last line is cut short; that run runs again", path)
        continue
      raise ValueError(f"{path}:{i + 1}: not a JSON line") from None
    check_record(record, f"{path}:{i + 1}")
    records[record["run"]] = record
  return records


def append_result(out: str | Path, record: Mapping) -> None:
  """Append one line and sync it: the record exists on disk once this returns."""
  check_record(record, "new record")
  path = Path(out) / RESULTS
  data = path.read_bytes() if path.exists() else b""
  with path.open("ab") as f:
    if data and not data.endswith(b"\n"):  # a line cut short by a kill: drop it
      f.truncate(data.rfind(b"\n") + 1)
    f.write((json.dumps(record) + "\n").encode())
    f.flush()
    os.fsync(f.fileno())


def check_settings(out: str | Path, settings: Mapping) -> None:
  """Keep OUT/study.json; refuse (cli.ConfigError, exit 2) a rerun with other settings,
  whose runs would not be comparable with the ones already done."""
  path = Path(out) / SETTINGS
  settings = json.loads(json.dumps(settings))  # tuples as lists, as they are stored
  if path.exists():
    saved = json.loads(path.read_text())
    diffs = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if diffs:
      raise cli.ConfigError(
        f"{path}: this study was started with other settings ("
        + "; ".join(f"{k}: {saved.get(k)!r} there, {settings.get(k)!r} now" for k in diffs)
        + "); use another --out or the same settings"
      )
    return
  Path(out).mkdir(parents=True, exist_ok=True)
  _atomic_write(path, lambda p: p.write_text(json.dumps(settings, indent=2) + "\n"))


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
  tmp = path.with_name(f".{path.name}.partial")
  write(tmp)
  tmp.rename(path)


def _savez(path: Path, **arrays) -> None:
  def write(tmp):
    with tmp.open("wb") as f:
      np.savez(f, **arrays)

  _atomic_write(path, write)


def _final_loss(workdir: Path, metrics: Mapping) -> float | None:
  """The last logged loss: this call's, or metrics.jsonl's when the training was
  already done (a run killed while sampling resumes with nothing left to train)."""
  if "loss" in metrics:
    return float(metrics["loss"])
  path = workdir / "metrics.jsonl"
  lines = path.read_text().splitlines() if path.exists() else []
  losses = [json.loads(line).get("loss") for line in lines if line.strip()]
  losses = [v for v in losses if v is not None]
  return float(losses[-1]) if losses else None


class Scorer:
  """The extractor and the real clips' features, made on first use (a study stopped by
  its budget before any video run loads no I3D and reads no clips)."""

  def __init__(
    self,
    out: Path,
    extractor_factory: Callable[[], FeatureExtractor],
    num_real: int,
    bootstrap: int,
  ):
    self.out, self.factory, self.num_real, self.bootstrap = (
      out,
      extractor_factory,
      num_real,
      bootstrap,
    )
    self._extractor = None
    self._real = None

  @property
  def extractor(self) -> FeatureExtractor:
    self._extractor = self._extractor or self.factory()
    return self._extractor

  def features(self, videos: np.ndarray, what: str) -> np.ndarray:
    clips = protocol_length(videos, self.extractor.num_frames)
    return extract({"f": self.extractor}, [clips], what=what)["f"]

  def real(self, data: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
    """{"features", "motion"} of `num_real` clips of `data` (cached in OUT/REAL)."""
    if self._real is not None:
      return self._real
    self._real = read_real(self.out)
    if self._real is not None:
      return self._real
    protocol = evaluation.EvalSettings(
      num_videos=self.num_real,
      seed=1234,
      num_frames=data.num_frames,
      image_size=data.image_size,
    )
    reals = evaluation.data_videos(data, protocol, {"kind": "study real clips"})
    videos = np.concatenate(list(reals.batches()))
    self._real = {"features": self.features(videos, "real"), "motion": motion_stats(videos)}
    _savez(
      self.out / REAL, features=self._real["features"], motion=json.dumps(self._real["motion"])
    )
    return self._real


def read_real(out: str | Path) -> dict | None:
  """{"features", "motion"} of the real clips OUT/REAL holds; None before they are made."""
  path = Path(out) / REAL
  if not path.exists():
    return None
  with np.load(path, allow_pickle=False) as f:
    return {"features": f["features"], "motion": json.loads(str(f["motion"]))}


def sample_videos(config: ml_collections.ConfigDict, workdir: str, num_videos: int) -> np.ndarray:
  """`num_videos` uint8 videos from WORKDIR's EMA weights with the config's sampler."""
  spec = model_spec(config)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  graphdef, state = generate.load_ema_params(spec, config, workdir)
  sampler = generate.VideoSampler(
    graphdef,
    spec.config,
    num_frames=config.data.num_frames,
    image_size=config.data.image_size,
    batch_size=min(config.sample.batch_size, num_videos),
    config=generate.sampler_config(config),
  )
  batches = sampler.batches(
    state,
    schedule,
    num_videos=num_videos,
    base_seed=config.seed + 100,
    residual_seed=config.seed + 200,
  )
  return np.concatenate([video_io.to_uint8(b) for b in batches])


def _execute(run: Run, out: Path, scorer: Scorer, num_videos: int) -> dict | None:
  """Train (or resume) one run and make its record; None when SIGTERM stopped it."""
  workdir = out / "runs" / run.run_id
  config = ml_collections.ConfigDict(run.config.to_dict())  # the Run's own stays as given
  if run.base_from:
    config.train.init_base_from = str((out / "runs" / run.base_from / BASE_UNET).resolve())
  start = time.time()
  logging.info("Study run %s: training in %s", run.run_id, workdir)
  metrics = train(config, str(workdir))
  if outcome(str(workdir), config.train.num_steps, metrics).stopped_early:
    return None
  record = {
    "run": run.run_id,
    "kind": run.kind,
    "seed": run.seed,
    **dict(run.describe),
    "train_steps": config.train.num_steps,
    "batch_size": config.train.batch_size,
    "final_loss": _final_loss(workdir, metrics),
    "commit": provenance.commit(),
  }
  if run.kind == "image_base":
    export_base(config, str(workdir), str(workdir / BASE_UNET))
    record.update(base_unet=str(Path("runs") / run.run_id / BASE_UNET))
  else:
    samples = workdir / "samples.npz"
    if not samples.exists():
      _savez(samples, videos=sample_videos(config, str(workdir), num_videos))
    with np.load(samples) as f:
      videos = f["videos"]
    feats = workdir / "features.npz"
    if not feats.exists():
      _savez(feats, features=scorer.features(videos, "sampled"))
    with np.load(feats) as f:
      fake = f["features"]
    real = scorer.real(config.data)["features"]
    record.update(
      fvd=fvd.frechet_distance(real, fake),
      fvd_interval=study_stats.bootstrap_interval(
        real, fake, num_resamples=scorer.bootstrap, seed=run.seed
      ),
      motion=motion_stats(videos),
      num_videos=len(videos),
      num_real=len(real),
      extractor=scorer.extractor.name,
      sampler=dataclasses.asdict(generate.sampler_config(config)),
    )
  record["seconds"] = time.time() - start  # this call's: a resumed run's last part
  return record


def check_runs(runs: Sequence[Run]) -> None:
  """Equal training for every video run, distinct ids, kinds known, each base_from an
  image_base run listed before it; ValueError naming the run otherwise."""
  seen = {}
  for run in runs:
    if run.run_id in seen:
      raise ValueError(f"run {run.run_id!r} is listed twice")
    if run.kind not in KINDS:
      raise ValueError(f"run {run.run_id}: kind={run.kind!r}; expected one of {KINDS}")
    if run.base_from and seen.get(run.base_from, Run("", 0, None)).kind != "image_base":
      raise ValueError(
        f"run {run.run_id}: base_from={run.base_from!r} is not an image_base run listed before it"
      )
    seen[run.run_id] = run
  video = [r for r in runs if r.kind == "video"]
  shapes = {
    (r.config.train.num_steps, r.config.train.batch_size, json.dumps(r.config.data.to_dict()))
    for r in video
  }
  if len(shapes) > 1:
    raise ValueError(
      "the video runs differ in train.num_steps, train.batch_size or data; a study "
      "compares arms at equal training on the same data"
    )


def run_study(
  runs: Sequence[Run],
  out: str | Path,
  *,
  settings: Mapping,
  extractor_factory: Callable[[], FeatureExtractor],
  num_videos: int,
  num_real: int,
  bootstrap: int = 200,
  budget_minutes: float | None = None,
) -> Status:
  """Do the runs not yet in OUT/results.jsonl, in order, while the budget lasts."""
  check_runs(runs)
  out = Path(out)
  check_settings(out, settings)
  done = read_results(out)
  scorer = Scorer(out, extractor_factory, num_real, bootstrap)
  start = time.monotonic()
  for run in runs:
    if run.run_id in done:
      continue
    if budget_minutes is not None and time.monotonic() - start >= 60.0 * budget_minutes:
      logging.info("The budget of %g minutes is spent: no new run starts.", budget_minutes)
      break
    record = _execute(run, out, scorer, num_videos)
    if record is None:
      logging.info("Run %s stopped early (SIGTERM); rerun to resume it.", run.run_id)
      break
    append_result(out, record)
    done[run.run_id] = record
  finished = sum(r.run_id in done for r in runs)
  return Status(cli.DONE if finished == len(runs) else cli.PREEMPTED, finished, len(runs))
