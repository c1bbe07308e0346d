"""A finished study folder made small enough to commit, and read like the folder itself.

  python -m benchmarks.study_publish --study=runs/study --out=benchmarks/study_results

`make study` leaves about 1 GB in runs/study (checkpoints, 256 samples and their I3D
features per run). What the tables and `colab/decomposition.ipynb` need of it is small:

  OUT/study.json, results.jsonl     the settings and every run's record, as they are
  OUT/decomposition.md, ...         the tables and sentences `make study` wrote
  OUT/real_motion.json              the real clips' motion columns (their features are
                                    not needed: each record holds its FVD and interval)
  OUT/runs/RUN/samples.npz          the first `num_videos` samples of each video run
  OUT/fvd.png, motion.png, strips.png   the notebook's figures, for the docs

`study_plots.read_study(OUT)` gives the same records, motion, tables and strips as the
study folder, so the notebook shows the committed answer in a fresh clone or Colab
without the hours of `make study`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from absl import flags

from benchmarks import study_plots, study_runner
from videofusion_jax import cli

# The notebook's figures, by the name of their PNG.
FIGURES = {
  "fvd": study_plots.fvd_figure,
  "motion": study_plots.motion_figure,
  "strips": study_plots.strips_figure,
}


def publish(study: str | Path, out: str | Path, *, num_videos: int = 4) -> Path:
  """Write the small copy of the study folder STUDY to OUT; return OUT. OUT is replaced
  whole once the copy is complete (a failure midway leaves the old OUT as it was).

  Refused (cli.ConfigError) when STUDY holds no finished run, or when OUT is STUDY."""
  source = study_plots.read_study(study)
  if not source.done:
    raise cli.ConfigError(source.message)
  out = Path(out)
  if out.resolve() == source.out.resolve():
    raise cli.ConfigError(f"--out={out} is the study folder itself; name another folder")
  if num_videos < 1:
    raise cli.ConfigError(f"num_videos={num_videos}; expected >= 1")
  final, out = out, out.with_name(f".{out.name}.partial")
  if out.exists():
    shutil.rmtree(out)
  out.mkdir(parents=True)
  for name in (study_runner.SETTINGS, study_runner.RESULTS) + tuple(
    f"{s}.md" for s in source.names
  ):
    if (source.out / name).is_file():
      shutil.copyfile(source.out / name, out / name)
  if source.data_motion is not None:
    (out / study_plots.REAL_MOTION).write_text(json.dumps(source.data_motion, indent=2) + "\n")
  for run_id, record in source.results.items():
    samples = source.out / "runs" / run_id / "samples.npz"
    if record["kind"] != "video" or not samples.is_file():
      continue
    with np.load(samples) as f:
      videos = f["videos"][:num_videos]
    (out / "runs" / run_id).mkdir(parents=True)
    np.savez_compressed(out / "runs" / run_id / "samples.npz", videos=videos)
  write_figures(out, out)
  if final.exists():
    shutil.rmtree(final)
  out.rename(final)
  return final


def write_figures(study: str | Path, out: str | Path) -> None:
  """The notebook's three figures of STUDY as OUT/{fvd,motion,strips}.png (matplotlib
  Figures, not pyplot's: no backend to choose)."""
  study = study_plots.read_study(study)
  for name, draw in FIGURES.items():
    draw(study).savefig(Path(out) / f"{name}.png", dpi=90)


def main(argv):
  del argv
  out = publish(_STUDY.value, _OUT.value, num_videos=_NUM_VIDEOS.value)
  size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
  print(f"{study_plots.read_study(out).message} ({size / 1e3:.0f} kB)")


if __name__ == "__main__":
  _STUDY = flags.DEFINE_string("study", "runs/study", "The study folder make study wrote.")
  _OUT = flags.DEFINE_string("out", "benchmarks/study_results", "The folder to write.")
  _NUM_VIDEOS = flags.DEFINE_integer("num_videos", 4, "Samples kept per video run.")
  cli.run(main)
