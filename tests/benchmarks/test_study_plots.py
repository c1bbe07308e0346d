"""benchmarks/study_plots.py on study folders written by study_runner's own functions:
the figures hold the tables' intervals and each run, the strips the right run's
samples, a missing or partial study says what to run, and the notebook's cells run."""

import ast
import dataclasses
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from benchmarks import decomposition_study as ds
from benchmarks import study_plots, study_runner, study_stats
from benchmarks.study_publish import publish
from tests.benchmarks.test_decomposition_study import STANDIN, _tiny
from videofusion_jax.data import video_io
from videofusion_jax.data.synthetic import SyntheticShapes
from videofusion_jax.metrics import fvd

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[2]
SETTINGS = _tiny(studies=ds.STUDIES, lams=(0.0, 0.25, 0.5), seeds=(0, 1), num_videos=4, num_real=6)
NUM_FRAMES, SIZE = 8, 16  # configs/demo.py:setting=tiny's clips


def _clips(num: int, seed: int) -> np.ndarray:
  shapes = SyntheticShapes(num_clips=num, num_frames=NUM_FRAMES, image_size=SIZE, seed=seed)
  return video_io.to_uint8(np.stack([shapes[i]["video"] for i in range(num)]))


def _finish(out: Path, run: study_runner.Run, scorer: study_runner.Scorer) -> None:
  """Record `run` as done the way study_runner._execute does after training: its
  samples.npz (synthetic clips standing in for samples: no training here), FVD with its
  bootstrap interval against the real clips, motion; appended by append_result, which
  checks the schema."""
  record = {
    "run": run.run_id,
    "kind": run.kind,
    "seed": run.seed,
    **dict(run.describe),
    "train_steps": run.config.train.num_steps,
    "batch_size": run.config.train.batch_size,
    "final_loss": 0.1,
    "seconds": 1.0,
    "commit": "test",
  }
  if run.kind == "video":
    workdir = out / "runs" / run.run_id
    workdir.mkdir(parents=True)
    # Each run its own clips, some darkened so that the FVDs differ.
    videos = _clips(SETTINGS.num_videos, seed=100 + len(study_runner.read_results(out)))
    videos = (videos * (0.5 + 0.5 * (run.seed == 0))).astype(np.uint8)
    study_runner._savez(workdir / "samples.npz", videos=videos)
    real = scorer.real(run.config.data)["features"]
    fake = scorer.features(videos, "sampled")
    record.update(
      fvd=fvd.frechet_distance(real, fake),
      fvd_interval=study_stats.bootstrap_interval(real, fake, num_resamples=5, seed=run.seed),
      motion=study_runner.motion_stats(videos),
      num_videos=len(videos),
      num_real=len(real),
      extractor=scorer.extractor.name,
      sampler={},
    )
  study_runner.append_result(out, record)


def _study_folder(out: Path, done: list[str]) -> Path:
  """A study folder of SETTINGS where the runs `done` have finished."""
  study_runner.check_settings(out, dataclasses.asdict(SETTINGS))  # writes study.json
  scorer = study_runner.Scorer(out, STANDIN, SETTINGS.num_real, SETTINGS.bootstrap)
  for run in ds.runs(SETTINGS):
    if run.run_id in done:
      _finish(out, run, scorer)
  return out


# 6 of 10 runs: seed 0 but lam 0.25, and of seed 1 lam 0 and the image run; the
# arm lam=0.25 is pending.
PARTIAL = [
  "lam0_seed0",
  "lam0.5_seed0",
  "image_seed0",
  "lam0.5_pretrained_seed0",
  "lam0_seed1",
  "image_seed1",
]


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
  return _study_folder(tmp_path_factory.mktemp("study") / "study", PARTIAL)


def _render(fig) -> None:
  fig.savefig(io.BytesIO(), format="png")  # Agg draws every artist


# --- missing and partial ---------------------------------------------------------------


def test_a_missing_or_empty_folder_says_what_to_run_and_plots_nothing(tmp_path):
  for out in (tmp_path / "nothing", _study_folder(tmp_path / "empty", [])):
    study = study_plots.read_study(out)
    assert study.done == 0
    assert study.message == (
      f"{out}: no finished study run here yet; run `make study` in the repository (hours "
      "on 2 CPU cores; resumable: run it again to go on), or `make study "
      "STUDY_ARGS=--budget_minutes=60` to run it in parts."
    )
    for show in (
      study_plots.summary,
      study_plots.fvd_figure,
      study_plots.motion_figure,
      study_plots.strips,
      study_plots.strips_figure,
    ):
      with pytest.raises(study_plots.NoResults) as e:
        show(out)
      assert str(e.value) == study.message
  assert study_plots.read_study(tmp_path / "empty").total == 10


def test_a_partial_study_says_how_many_runs_are_missing(partial):
  study = study_plots.read_study(partial)
  assert (study.done, study.total) == (6, 10)
  assert study.message.startswith(
    f"{partial}: 6 of 10 runs done, 4 missing; the plots show the runs done so far. "
    "To finish: run `make study`"
  )
  text = study_plots.summary(study)
  # The tables and sentences make study writes (the same study_stats calls).
  for name in ds.STUDIES:
    table = ds.report(SETTINGS, partial, name).split("\n\n")[1:]
    assert "\n\n".join(table).strip() in text
  assert "| lam=0.5 | 1 of 2 |" in text and "| lam=0.25 | 0 of 2 | pending |" in text
  assert "Not finished: 3 of 6 runs" in text and "Not finished: 2 of 4 runs" in text


def test_unknown_settings_fields_are_named(tmp_path):
  (tmp_path / study_runner.SETTINGS).write_text('{"seeds": [0], "lamz": [0.5]}')
  with pytest.raises(ValueError, match=r"study.json: \['lamz'\] are not fields"):
    study_plots.read_study(tmp_path)


# --- figures ---------------------------------------------------------------------------


def _collection(ax, gid):
  (found,) = [c for c in ax.collections if c.get_gid() == gid]
  return found


def test_fvd_figure_has_each_arms_interval_and_each_run(partial):
  study = study_plots.read_study(partial)
  fig = study_plots.fvd_figure(partial)
  _render(fig)
  assert len(fig.axes) == 2
  for ax, name in zip(fig.axes, ds.STUDIES):
    arms, _ = ds.arms(SETTINGS, study.results, name)
    bars = {c.get_label(): c for c in ax.containers}
    assert sorted(bars) == sorted(a.label for a in arms if a.runs)
    pending = [t.get_text() for t in ax.texts]
    assert pending == ["pending\n(0 of 2)" for a in arms if not a.runs]
    for i, arm in enumerate(arms):
      if not arm.runs:
        continue
      _, _, (bar,) = bars[arm.label].lines
      (mean,) = [l for l in ax.lines if l.get_gid() == f"mean:{arm.label}"]
      np.testing.assert_allclose(mean.get_xydata(), [[i, arm.mean]])
      np.testing.assert_allclose(
        bar.get_segments()[0], [[i, arm.interval[0]], [i, arm.interval[1]]]
      )
      dots = _collection(ax, f"runs:{arm.label}").get_offsets()
      np.testing.assert_allclose(dots[:, 1], [r["fvd"] for r in arm.runs])
      assert (dots[:, 0] > i).all() and (dots[:, 0] < i + 0.5).all()
      faint = _collection(ax, f"bootstrap:{arm.label}").get_segments()
      np.testing.assert_allclose([s[:, 1] for s in faint], [r["fvd_interval"] for r in arm.runs])
  # Two seeds: the t interval over seeds; one seed: that run's bootstrap interval.
  lam0, _, lam05 = ds.arms(SETTINGS, study.results, "decomposition")[0]
  assert lam0.interval == study_stats.seed_interval(lam0.fvds)
  assert lam05.interval == tuple(study.results["lam0.5_seed0"]["fvd_interval"])
  assert lam0.mean != lam05.mean


def test_motion_figure_has_each_arms_mean_and_the_datas_line(partial):
  study = study_plots.read_study(partial)
  real = study_runner.read_real(partial)["motion"]
  fig = study_plots.motion_figure(study)
  _render(fig)
  assert len(fig.axes) == 2 * 4
  panels = iter(fig.axes)
  for name in ds.STUDIES:
    arms, _ = ds.arms(SETTINGS, study.results, name)
    for key in study_plots.MOTION_COLUMNS:
      ax = next(panels)
      assert key.replace("_", " ") in ax.get_title()
      (line,) = [l for l in ax.lines if l.get_gid() == "data"]
      assert line.get_ydata()[0] == real[key]
      for arm in arms:
        if not arm.runs:
          assert not [c for c in ax.collections if c.get_gid().endswith(arm.label)]
          continue
        (mean,) = _collection(ax, f"mean:{arm.label}").get_segments()
        np.testing.assert_allclose(mean[:, 1], arm.motion_mean(key))
        dots = _collection(ax, f"runs:{arm.label}").get_offsets()
        np.testing.assert_allclose(dots[:, 1], [r["motion"][key] for r in arm.runs])


def test_strips_are_the_first_seeds_samples_frames_side_by_side(partial):
  found = study_plots.strips(partial, num_videos=3)
  # Arms with a finished run: decomposition lam 0 and 0.5; pretraining both.
  assert [(s.study, s.label, s.run) for s in found] == [
    ("decomposition", "independent noise (lam=0)", "lam0_seed0"),
    ("decomposition", "lam=0.5", "lam0.5_seed0"),
    ("pretraining", "from scratch (lam=0.5)", "lam0.5_seed0"),
    ("pretraining", "image-pretrained base (lam=0.5)", "lam0.5_pretrained_seed0"),
  ]
  for strip in found:
    with np.load(partial / "runs" / strip.run / "samples.npz") as f:
      samples = f["videos"]
    assert strip.videos.dtype == np.uint8 and strip.seed == 0
    assert strip.videos.shape == (3, SIZE, NUM_FRAMES * SIZE, 3)
    assert strip.num_frames == NUM_FRAMES
    for j in range(3):
      for frame in range(NUM_FRAMES):
        np.testing.assert_array_equal(
          strip.videos[j, :, frame * SIZE : (frame + 1) * SIZE], samples[j, frame]
        )
  fig = study_plots.strips_figure(partial, num_videos=3)
  _render(fig)
  titles = [ax.get_title() for ax in fig.axes if ax.images]
  assert titles == [f"{s.study}: {s.label}\n(run {s.run})" for s in found]
  shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
  assert shown[0].shape == (3 * SIZE + 2, NUM_FRAMES * SIZE, 3)  # a white line between two
  np.testing.assert_array_equal(shown[0][SIZE + 1 : 2 * SIZE + 1], found[0].videos[1])


# --- the notebook's cells ----------------------------------------------------------------


def _study_cells() -> list[str]:
  """The code cells of decomposition.ipynb's last section, read from the notebook file
  (plain JSON; `build_notebooks.py --check` keeps it equal to what the builder writes)."""
  cells = json.loads((ROOT / "colab/decomposition.ipynb").read_text())["cells"]
  sources = [("".join(c["source"]), c["cell_type"]) for c in cells]
  start = next(i for i, (text, _) in enumerate(sources) if text.startswith("## What the studies"))
  return [text for text, kind in sources[start:] if kind == "code"]


def test_no_earlier_cell_of_the_notebook_rebinds_ipythons_display():
  """The study cells show figures with IPython's `display`, a builtin of the kernel; an
  earlier `from videofusion_jax.sampling import display` shadowed it (TypeError: 'module'
  object is not callable, found by make test-notebooks)."""
  cells = json.loads((ROOT / "colab/decomposition.ipynb").read_text())["cells"]
  bound = []
  for cell in (c for c in cells if c["cell_type"] == "code"):
    for node in ast.walk(ast.parse("".join(cell["source"]))):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        bound += [a.asname or a.name.split(".")[0] for a in node.names]
      elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        bound.append(node.id)
  assert "display" not in bound


def _run_cells(checkout: Path, capsys) -> tuple[str, list]:
  """The cells in order in one namespace, as the kernel runs them after SETUP (which
  defines ROOT); `display` is IPython's, here a list of what it was given."""
  shown = []
  namespace = {"ROOT": checkout, "display": shown.append}
  for source in _study_cells():
    exec(compile(source, "<notebook cell>", "exec"), namespace)
  return capsys.readouterr().out, shown


def test_notebook_cells_without_a_study_print_what_to_run(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  text, shown = _run_cells(tmp_path / "checkout", capsys)
  message = study_plots.read_study(tmp_path / "checkout" / "runs/study").message
  assert message in text and shown == []


# The study of one's own (make study's folder), else the committed one (study_publish.py).
@pytest.mark.parametrize("where", ["runs/study", "benchmarks/study_results"])
def test_notebook_cells_show_the_tables_figures_and_strips(
  tmp_path, partial, monkeypatch, capsys, where
):
  monkeypatch.chdir(tmp_path)  # no study here: the cells look in the checkout
  folder = partial if where == "runs/study" else publish(partial, tmp_path / "published")
  (tmp_path / "checkout" / where).parent.mkdir(parents=True)
  (tmp_path / "checkout" / where).symlink_to(folder)
  text, shown = _run_cells(tmp_path / "checkout", capsys)
  assert "6 of 10 runs done, 4 missing" in text
  assert "| independent noise (lam=0) | 2 of 2 |" in text
  assert len(shown) == 3  # FVD, motion, strips
  for fig in shown:
    _render(fig)
  assert [len(fig.axes) for fig in shown] == [2, 8, 4]


# --- a real tiny study --------------------------------------------------------------------


@pytest.mark.slow  # one tiny training and sampling (~30 s on 2 busy cores)
def test_plots_of_a_study_the_runner_ran(tmp_path):
  out = tmp_path / "study"
  settings = _tiny(seeds=(0,))
  ds.study(settings, out, extractor_factory=STANDIN)
  study = study_plots.read_study(out)
  assert (study.done, study.total) == (1, 1) and study.message == f"{out}: all 1 runs done."
  fig = study_plots.fvd_figure(study)
  (bar,) = fig.axes[0].containers
  (arm,), _ = ds.arms(settings, study.results, "decomposition")
  np.testing.assert_allclose(bar.lines[2][0].get_segments()[0][:, 1], arm.interval)
  (strip,) = study_plots.strips(study, num_videos=2)
  with np.load(out / "runs/lam0_seed0/samples.npz") as f:
    np.testing.assert_array_equal(strip.videos[1, :, :SIZE], f["videos"][1, 0])
  for fig in (fig, study_plots.motion_figure(study), study_plots.strips_figure(study)):
    _render(fig)
