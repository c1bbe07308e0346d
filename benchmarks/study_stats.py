"""The numbers of a study: FVD bootstrap intervals, per-arm summaries, the table, the answer.

Pure functions of features and result records (`study_runner.py` writes the records), so
each is tested on data with a known answer.

Two kinds of interval, on purpose:
- a run's **bootstrap interval**: the FVD of one trained model recomputed on videos
  resampled with replacement (sampled and real, independently). It says how much the
  finite number of videos moves the number, not how much another training run would.
  The resampled FVD is biased upwards (duplicates shrink the covariances' rank), so the
  interval sits a little above the point estimate for small sets.
- an arm's **interval across seeds**: Student's t interval of the mean of its runs' FVDs
  (each seed trains, samples and scores anew), which holds both the training and the
  sampling noise. With one seed it falls back to that run's bootstrap interval.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from videofusion_jax.metrics import fvd

LEVEL = 0.95


def bootstrap_interval(
  real: np.ndarray,
  fake: np.ndarray,
  *,
  num_resamples: int = 200,
  level: float = LEVEL,
  seed: int = 0,
  statistic: Callable[[np.ndarray, np.ndarray], float] = fvd.frechet_distance,
) -> tuple[float, float]:
  """Percentile interval of `statistic(real, fake)` over videos resampled with replacement.

  `real`, `fake`: (n, d) features, one row per video. Both sets are resampled (each
  is a finite draw: the real clips as much as the samples); the same `seed` gives the
  same interval.
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  if num_resamples < 1:
    raise ValueError(f"num_resamples={num_resamples}; expected >= 1")
  if not 0.0 < level < 1.0:
    raise ValueError(f"level={level}; expected 0 < level < 1")
  rng = np.random.default_rng(seed)
  values = np.array(
    [
      statistic(
        real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))]
      )
      for _ in range(num_resamples)
    ]
  )
  tail = 100.0 * (1.0 - level) / 2.0
  lo, hi = np.percentile(values, [tail, 100.0 - tail])
  return float(lo), float(hi)


def seed_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
  """Student's t interval of the mean of `values` (>= 2 of them)."""
  x = np.asarray(values, np.float64)
  if len(x) < 2:
    raise ValueError(f"{len(x)} value(s); an interval across seeds needs >= 2")
  half = stats.t.ppf(0.5 + level / 2.0, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
  return float(x.mean() - half), float(x.mean() + half)


@dataclasses.dataclass(frozen=True)
class Arm:
  """One arm of a study as the table shows it: its label and the runs that are done."""

  label: str
  runs: tuple[dict, ...]  # result records (study_runner.py's schema)
  expected: int  # runs the arm has when the study is finished

  @property
  def fvds(self) -> list[float]:
    return [r["fvd"] for r in self.runs]

  @property
  def mean(self) -> float:
    return float(np.mean(self.fvds))

  @property
  def interval(self) -> tuple[float, float]:
    if len(self.runs) == 1:
      return tuple(self.runs[0]["fvd_interval"])
    return seed_interval(self.fvds)

  def motion_mean(self, key: str) -> float:
    """The mean over runs of a motion column, skipping runs where it is undefined (None in
    the record: e.g. no object found in the samples); NaN when no run defines it."""
    values = np.array([r["motion"][key] for r in self.runs], dtype=np.float64)  # None -> nan
    return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else math.nan


def _fmt(x: float, digits: int = 1) -> str:
  return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def fvd_text(arm: Arm) -> str:
  lo, hi = arm.interval
  return f"{_fmt(arm.mean)} [{_fmt(lo)}, {_fmt(hi)}]"


def markdown_table(arms: Sequence[Arm], data_motion: dict | None = None) -> str:
  """One row per arm: FVD mean and interval, each seed's FVD with its bootstrap
  interval, and the samples' motion next to the data's (`data_motion`)."""
  lines = [
    "| arm | runs | FVD mean [95% interval over seeds] | FVD per seed [bootstrap 95%] "
    "| speed px/frame | straightness | centre distance /255 |",
    "|---|---|---|---|---|---|---|",
  ]
  for arm in arms:
    if not arm.runs:
      lines.append(f"| {arm.label} | 0 of {arm.expected} | pending | | | | |")
      continue
    per_seed = "; ".join(
      f"s{r['seed']}: {_fmt(r['fvd'])} [{_fmt(r['fvd_interval'][0])}, {_fmt(r['fvd_interval'][1])}]"
      for r in arm.runs
    )
    lines.append(
      f"| {arm.label} | {len(arm.runs)} of {arm.expected} | {fvd_text(arm)} | {per_seed} "
      f"| {_fmt(arm.motion_mean('speed'), 2)} | {_fmt(arm.motion_mean('straightness'), 2)} "
      f"| {_fmt(arm.motion_mean('centre_distance'), 1)} |"
    )
  if data_motion:
    lines.append(
      f"| data (real clips) | | | | {_fmt(data_motion['speed'], 2)} "
      f"| {_fmt(data_motion['straightness'], 2)} "
      f"| {_fmt(data_motion['centre_distance'], 1)} |"
    )
  return "\n".join(lines)


def answer(arms: Sequence[Arm], reference: str) -> str:
  """One sentence from the numbers: which arms beat or lose to the `reference` arm
  (lower FVD is better; "beats" only when the two intervals do not overlap)."""
  by_label = {a.label: a for a in arms}
  ref = by_label[reference]
  missing = sum(a.expected - len(a.runs) for a in arms)
  if missing:
    return (
      f"Not finished: {missing} of {sum(a.expected for a in arms)} runs still to do "
      "(rerun the same command; finished runs are kept)."
    )
  ref_lo, ref_hi = ref.interval
  verdicts = []
  for arm in arms:
    if arm.label == reference:
      continue
    lo, hi = arm.interval
    if hi < ref_lo:
      verdicts.append(f"{arm.label} beats {reference}: FVD {fvd_text(arm)} vs {fvd_text(ref)}")
    elif lo > ref_hi:
      verdicts.append(f"{reference} beats {arm.label}: FVD {fvd_text(ref)} vs {fvd_text(arm)}")
  if not verdicts:
    others = "; ".join(f"{a.label} {fvd_text(a)}" for a in arms)
    return f"The arms do not separate at this scale (FVD, 95% intervals: {others})."
  return "; ".join(verdicts) + "."
