"""Plots of a study folder (`decomposition_study.py`'s OUT): FVD and motion per arm, and
strips of each arm's samples. The arms, their intervals and the sentences are the
tables' (`decomposition_study.arms`, `study_stats`); nothing here computes a statistic.

  study = read_study("runs/study")
  print(study.message)           # what is done, or what to run
  if study.done:
    print(summary(study))        # the tables and answers `make study` writes
    fvd_figure(study); motion_figure(study); strips_figure(study)

A folder without results gives a message saying what to run, and the figures refuse
(`NoResults`, with that message); a partial study plots the runs done so far, and its
message says how many are missing. matplotlib (the `colab` and `notebooks` extras) is
imported by the figure functions only.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
import warnings
from pathlib import Path

import numpy as np

from benchmarks import decomposition_study, study_runner, study_stats

# The motion columns plotted, with their axis titles (study_runner.MOTION_KEYS less
# path_speed, which straightness already divides by).
MOTION_COLUMNS = {
  "speed": "speed (px/frame)",
  "straightness": "straightness",
  "centre_distance": "centre distance (/255)",
  "frame_change": "frame change (/255)",
}
# A published study's real-clip motion (study_publish.py), where a study folder has
# study_runner.REAL.
REAL_MOTION = "real_motion.json"
RUNS_TO_DO = (
  "run `make study` in the repository (hours on 2 CPU cores; resumable: run it again to "
  "go on), or `make study STUDY_ARGS=--budget_minutes=60` to run it in parts"
)


class NoResults(ValueError):
  """The study folder holds no finished run: nothing to plot."""


@dataclasses.dataclass(frozen=True)
class Study:
  """What a study folder holds: its settings, the finished runs' records, the real clips'
  motion, and how many runs the settings list."""

  out: Path
  settings: decomposition_study.StudySettings | None  # None: no study started here
  results: dict[str, dict]  # run_id -> record (study_runner.read_results)
  data_motion: dict | None  # the real clips' motion columns; None before they are scored
  total: int  # runs the settings list, image runs included

  @property
  def done(self) -> int:
    return len(self.results)

  @property
  def names(self) -> tuple[str, ...]:
    return self.settings.studies if self.settings else ()

  def arms(self, name: str) -> tuple[list[study_stats.Arm], str]:
    """(arms, reference label) of study `name`, as its table groups them."""
    return decomposition_study.arms(self.settings, self.results, name)

  @property
  def message(self) -> str:
    if not self.done:
      return f"{self.out}: no finished study run here yet; {RUNS_TO_DO}."
    missing = self.total - self.done
    if missing:
      return (
        f"{self.out}: {self.done} of {self.total} runs done, {missing} missing; the "
        f"plots show the runs done so far. To finish: {RUNS_TO_DO}."
      )
    return f"{self.out}: all {self.total} runs done."


def _settings(path: Path) -> decomposition_study.StudySettings:
  saved = json.loads(path.read_text())
  known = {f.name for f in dataclasses.fields(decomposition_study.StudySettings)}
  unknown = sorted(set(saved) - known)
  if unknown:
    raise ValueError(f"{path}: {unknown} are not fields of decomposition_study.StudySettings")
  # JSON stores the tuples as lists.
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
  return decomposition_study.StudySettings(**fields)


def read_study(out: str | Path) -> Study:
  """The study in OUT; an empty Study (done == 0) when OUT or its study.json is missing."""
  out = Path(out)
  settings_path = out / study_runner.SETTINGS
  if not settings_path.is_file():
    return Study(out, None, {}, None, 0)
  settings = _settings(settings_path)
  run_ids = [r.run_id for r in decomposition_study.runs(settings)]
  results = study_runner.read_results(out)
  results = {i: results[i] for i in run_ids if i in results}  # in the study's run order
  real = study_runner.read_real(out)
  motion = real["motion"] if real else _published_motion(out)
  return Study(out, settings, results, motion, len(run_ids))


def _published_motion(out: Path) -> dict | None:
  """The real clips' motion of a published study (study_publish.py keeps only that of
  the real clips' features); None when not there."""
  path = out / REAL_MOTION
  return json.loads(path.read_text()) if path.is_file() else None


def _as_study(study: Study | str | Path) -> Study:
  study = study if isinstance(study, Study) else read_study(study)
  if not study.done:
    raise NoResults(study.message)
  return study


def summary(study: Study | str | Path) -> str:
  """Each study's table and answer, from the same functions as OUT/<study>.md."""
  study = _as_study(study)
  parts = []
  for name in study.names:
    arms, reference = study.arms(name)
    table = study_stats.markdown_table(arms, study.data_motion)
    parts.append(f"{name} study\n\n{table}\n\n{study_stats.answer(arms, reference)}")
  return "\n\n".join(parts)


def _tick_label(label: str) -> str:
  return textwrap.fill(label, 16)


def _runs_done(arms) -> str:
  return f"{sum(len(a.runs) for a in arms)} of {sum(a.expected for a in arms)} runs"


def _run_x(i: int, k: int) -> float:
  """Where run k's dot sits: right of its arm's mean (x = i), seeds side by side."""
  return i + 0.15 + 0.08 * k


def fvd_figure(study: Study | str | Path):
  """One panel per study: each arm's mean FVD with its 95% interval over seeds (the
  table's; one seed: that run's bootstrap interval) as an error bar, beside it each run
  as a dot with its bootstrap interval faint. An arm with no run yet says "pending".

  Artists, for readers of the figure's data: each arm's error bar is an
  ErrorbarContainer labelled with the arm's label, its mean the line with gid
  "mean:LABEL"; its runs are the collections with gid "runs:LABEL" (dots) and
  "bootstrap:LABEL" (intervals)."""
  from matplotlib.figure import Figure

  study = _as_study(study)
  fig = Figure(figsize=(5.5 * len(study.names), 4.2), layout="constrained")
  axes = fig.subplots(1, len(study.names), squeeze=False)[0]
  for ax, name in zip(axes, study.names):
    arms, reference = study.arms(name)
    for i, arm in enumerate(arms):
      colour = f"C{i}"
      if not arm.runs:
        ax.text(
          i, 0.5, f"pending\n(0 of {arm.expected})", ha="center", transform=ax.get_xaxis_transform()
        )
        continue
      # The bar spans the interval itself, drawn apart from the mean: a one-seed arm's
      # bootstrap interval need not hold its FVD (study_stats: it sits a little above).
      lo, hi = arm.interval
      ax.errorbar(
        [i],
        [(lo + hi) / 2],
        yerr=[(hi - lo) / 2],
        fmt="none",
        ecolor=colour,
        capsize=6,
        label=arm.label,
      )
      ax.plot([i], [arm.mean], "s", color=colour, markersize=7, gid=f"mean:{arm.label}")
      xs = [_run_x(i, k) for k in range(len(arm.runs))]
      ax.vlines(
        xs,
        [r["fvd_interval"][0] for r in arm.runs],
        [r["fvd_interval"][1] for r in arm.runs],
        colors=colour,
        alpha=0.3,
        gid=f"bootstrap:{arm.label}",
      )
      ax.scatter(xs, arm.fvds, s=14, color=colour, gid=f"runs:{arm.label}")
    ax.set_xticks(range(len(arms)), [_tick_label(a.label) for a in arms])
    ax.set_xlim(-0.5, len(arms) - 0.3)
    ax.set(
      ylabel="FVD (lower: closer to the real clips)",
      title=f"{name}: {_runs_done(arms)} (reference: {reference})",
    )
  fig.suptitle(
    "Square: arm mean; bar: 95% interval over seeds (one seed: its run's bootstrap "
    "interval); dots: one run each, faint: its bootstrap 95% interval",
    fontsize="small",
  )
  return fig


def motion_figure(study: Study | str | Path):
  """One row per study, one panel per motion column: each run as a dot, the arm's mean
  (`Arm.motion_mean`, the table's) as a bar, the real clips' value as a horizontal line.

  Artists: per arm the collections with gid "runs:LABEL" (dots) and "mean:LABEL" (the
  mean's bar); the data's line has gid "data"."""
  from matplotlib.figure import Figure

  study = _as_study(study)
  rows, cols = len(study.names), len(MOTION_COLUMNS)
  fig = Figure(figsize=(3.6 * cols, 3.4 * rows), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False)
  for row, name in zip(axes, study.names):
    arms, _ = study.arms(name)
    for ax, (key, title) in zip(row, MOTION_COLUMNS.items()):
      for i, arm in enumerate(arms):
        if not arm.runs:
          continue
        values = [r["motion"][key] for r in arm.runs]
        xs = [_run_x(i, k) for k in range(len(values))]
        ax.scatter(
          xs,
          np.array(values, dtype=np.float64),  # None (undefined) -> NaN: no dot
          s=14,
          color=f"C{i}",
          gid=f"runs:{arm.label}",
        )
        ax.hlines(
          arm.motion_mean(key), i - 0.25, i + 0.25, colors=f"C{i}", lw=2.5, gid=f"mean:{arm.label}"
        )
      if study.data_motion and study.data_motion.get(key) is not None:
        ax.axhline(study.data_motion[key], color="k", ls="--", lw=1, gid="data")
      ax.set_xticks(range(len(arms)), [_tick_label(a.label) for a in arms], fontsize="small")
      ax.set_xlim(-0.5, len(arms) - 0.3)
      ax.set_title(f"{name}: {title}", fontsize="medium")
  note = "" if study.data_motion else " (the real clips' motion is not scored yet)"
  fig.suptitle(
    f"Motion of the samples: dots one run each, bar the arm's mean; dashed: the real clips{note}",
    fontsize="small",
  )
  return fig


@dataclasses.dataclass(frozen=True)
class Strip:
  """A few sampled videos of one arm, each a row of its frames side by side."""

  study: str
  label: str  # the arm's, as in the tables
  run: str  # the run whose samples.npz they come from: the arm's first seed done
  seed: int
  videos: np.ndarray  # uint8 (num_videos, H, N * W, 3)
  num_frames: int  # N


def strips(study: Study | str | Path, num_videos: int = 4) -> list[Strip]:
  """Per study and arm, the first `num_videos` videos of the arm's first finished seed
  (OUT/runs/RUN/samples.npz). An arm without a finished run has no strip; a finished run
  whose samples.npz is gone (results copied without runs/) is skipped with a warning."""
  study = _as_study(study)
  out = []
  for name in study.names:
    arms, _ = study.arms(name)
    for arm in arms:
      if not arm.runs:
        continue
      record = arm.runs[0]  # decomposition_study.arms keeps the seeds' order
      path = study.out / "runs" / record["run"] / "samples.npz"
      if not path.is_file():
        warnings.warn(f"{path} is missing: no strip for {arm.label!r}", stacklevel=2)
        continue
      with np.load(path) as f:
        videos = f["videos"][:num_videos]
      k, n, h, w, c = videos.shape
      rows = videos.transpose(0, 2, 1, 3, 4).reshape(k, h, n * w, c)  # frames side by side
      out.append(Strip(name, arm.label, record["run"], record["seed"], rows, n))
  return out


def strips_figure(study: Study | str | Path, num_videos: int = 4):
  """`strips` drawn with one row per study and one column per arm, each titled with its
  arm and run; within a strip, one video per row, its frames left to right."""
  from matplotlib.figure import Figure

  study = _as_study(study)
  found = strips(study, num_videos)
  if not found:
    raise NoResults(f"{study.out}: no samples.npz of a finished run to show")
  names = [n for n in study.names if any(s.study == n for s in found)]
  cols = max(sum(s.study == n for s in found) for n in names)
  k, h, width, _ = found[0].videos.shape
  panel = 13.0 / cols  # inches per strip's width
  fig = Figure(
    figsize=(13.0, len(names) * (panel * k * (h + 1) / width + 0.6) + 0.4), layout="constrained"
  )
  axes = fig.subplots(len(names), cols, squeeze=False)
  for row, name in zip(axes, names):
    for ax in row:
      ax.set_axis_off()
    for ax, strip in zip(row, [s for s in found if s.study == name]):
      # The videos one under another, a white line between two.
      spaced = [np.pad(v, ((0, 1), (0, 0), (0, 0)), constant_values=255) for v in strip.videos]
      ax.imshow(np.concatenate(spaced)[:-1], interpolation="nearest")
      frame_width = width // strip.num_frames
      for f in range(1, strip.num_frames):  # where one frame ends and the next starts
        ax.axvline(f * frame_width - 0.5, color="0.5", lw=0.5)
      ax.set_title(f"{name}: {strip.label}\n(run {strip.run})", fontsize="small")
  fig.suptitle(
    "Samples of each arm's first seed: one video per row, its frames left to right",
    fontsize="small",
  )
  return fig
