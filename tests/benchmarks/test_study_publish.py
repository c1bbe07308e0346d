"""benchmarks/study_publish.py: the small copy of a study folder reads like the folder
(records, real motion, tables, strips), holds the figures, refuses what it cannot copy
before writing anything, and replaces an older copy only when complete; the committed
study is whole and RESULTS.md shows its numbers. (The notebook's cells reading it:
test_study_plots.py.)"""

import subprocess
import sys

import numpy as np
import pytest

from benchmarks import decomposition_study as ds
from benchmarks import study_plots, study_publish, study_runner, study_stats
from tests.benchmarks.test_study_plots import PARTIAL, ROOT, SETTINGS, _study_folder
from videofusion_jax import cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """A partial study folder with the tables `make study` writes at every exit."""
  out = _study_folder(tmp_path_factory.mktemp("study") / "study", PARTIAL)
  for name in ds.STUDIES:
    (out / f"{name}.md").write_text(ds.report(SETTINGS, out, name))
  return out


@pytest.fixture(scope="module")
def published(study, tmp_path_factory):
  return study_publish.publish(
    study, tmp_path_factory.mktemp("pub") / "study_results", num_videos=2
  )


def test_the_copy_reads_like_the_study(study, published):
  source, copy = study_plots.read_study(study), study_plots.read_study(published)
  assert copy.results == source.results and copy.settings == source.settings
  assert (copy.done, copy.total) == (source.done, source.total) == (6, 10)
  assert copy.data_motion == pytest.approx(source.data_motion) and copy.data_motion
  assert study_plots.summary(copy) == study_plots.summary(source)
  for name in source.names:
    assert (published / f"{name}.md").read_text() == (study / f"{name}.md").read_text()
  kept, full = study_plots.strips(copy, num_videos=2), study_plots.strips(source, num_videos=2)
  assert [(s.label, s.run) for s in kept] == [(s.label, s.run) for s in full]
  for a, b in zip(kept, full):
    np.testing.assert_array_equal(a.videos, b.videos)


def test_the_copy_is_small_and_holds_the_figures(published):
  assert not (published / study_runner.REAL).exists()  # features: not needed, not copied
  for name in study_publish.FIGURES:
    assert (published / f"{name}.png").read_bytes()[:8] == PNG
  video_runs = [r for r in PARTIAL if not r.startswith("image")]
  assert sorted(p.parent.name for p in published.glob("runs/*/samples.npz")) == sorted(video_runs)
  for run in video_runs:
    with np.load(published / "runs" / run / "samples.npz") as f:
      assert f["videos"].shape[0] == 2
  assert not list(published.parent.glob(".*partial"))


def test_what_cannot_be_published_is_refused_before_anything_is_written(tmp_path, study):
  empty = _study_folder(tmp_path / "empty", [])
  with pytest.raises(cli.ConfigError, match="no finished study run here yet"):
    study_publish.publish(empty, tmp_path / "out")
  with pytest.raises(cli.ConfigError, match="is the study folder itself"):
    study_publish.publish(study, study)
  assert not (tmp_path / "out").exists() and (study / study_runner.REAL).is_file()


def test_an_older_copy_stays_until_the_new_one_is_complete(tmp_path, study, monkeypatch):
  out = tmp_path / "study_results"
  out.mkdir()
  (out / "older.txt").write_text("kept")

  def broken(*args):
    raise OSError("disk full")

  monkeypatch.setattr(study_publish, "write_figures", broken)
  with pytest.raises(OSError):
    study_publish.publish(study, out)
  assert [p.name for p in out.iterdir()] == ["older.txt"]
  monkeypatch.undo()
  study_publish.publish(study, out)
  assert not (out / "older.txt").exists() and study_plots.read_study(out).done == 6


def test_the_cli_refuses_an_empty_study_with_one_line_and_exit_2(tmp_path):
  empty = _study_folder(tmp_path / "empty", [])
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.study_publish",
      f"--study={empty}",
      f"--out={tmp_path / 'o'}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 2, proc.stderr
  assert "no finished study run here yet" in proc.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "o").exists()


def test_the_committed_study_is_whole_and_results_md_shows_its_numbers():
  committed = ROOT / "benchmarks/study_results"
  study = study_plots.read_study(committed)
  assert study.done == study.total == 15 and study.data_motion is not None
  results_md = (ROOT / "benchmarks/RESULTS.md").read_text()
  for name in study.names:
    arms, reference = study.arms(name)
    # The tables and sentences as the records give them today, in RESULTS.md and in the
    # committed <study>.md that `make study` wrote.
    for text in (
      study_stats.markdown_table(arms, study.data_motion),
      study_stats.answer(arms, reference),
    ):
      assert text in results_md and text in (committed / f"{name}.md").read_text()
  assert len(study_plots.strips(study)) == 5  # an arm's strip each, 4 samples in each
