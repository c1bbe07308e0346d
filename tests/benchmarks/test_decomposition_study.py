"""The studies' machinery (benchmarks/decomposition_study.py, study_runner.py,
study_stats.py): intervals on data with known answers, the table and its sentence, the
run list, the results file, the budget, and a tiny study that resumes without retraining."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from benchmarks import decomposition_study as ds
from benchmarks import study_runner, study_stats
from videofusion_jax import cli
from videofusion_jax.configs import demo, demo_image
from videofusion_jax.metrics.features import FeatureExtractor

ROOT = Path(__file__).resolve().parents[2]


# --- intervals -----------------------------------------------------------------------


def test_bootstrap_interval_of_two_draws_of_one_gaussian_is_near_zero():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2000, 4))
  lo, hi = study_stats.bootstrap_interval(x, x.copy(), num_resamples=100)
  # The Fréchet distance of two resamples of one set is small and >= 0: its only
  # source is the resampling (about 2 d / n here).
  assert 0.0 <= lo <= hi < 0.05


def test_bootstrap_interval_of_shifted_means_holds_the_known_distance():
  # Equal covariances, means 2 apart along one axis: the Fréchet distance is |mu|^2 = 4.
  # A 95% interval misses it in about 1 draw of 20: count the misses over 20 draws.
  shift = np.array([2.0, 0.0, 0.0, 0.0])
  hits = []
  for draw in range(20):
    rng = np.random.default_rng(draw)
    real, fake = rng.normal(size=(500, 4)), rng.normal(size=(500, 4)) + shift
    lo, hi = study_stats.bootstrap_interval(real, fake, num_resamples=100, seed=draw)
    assert hi - lo < 2.0
    hits.append(lo < 4.0 < hi)
  assert sum(hits) >= 16, hits
  again = study_stats.bootstrap_interval(real, fake, num_resamples=100, seed=19)
  assert again == (lo, hi)  # the same seed, the same interval


def test_seed_interval_is_students_t():
  lo, hi = study_stats.seed_interval([1.0, 2.0, 3.0])
  half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 dof) x sd 1 / sqrt(3)
  assert (lo, hi) == pytest.approx((2.0 - half, 2.0 + half))
  with pytest.raises(ValueError, match="needs >= 2"):
    study_stats.seed_interval([1.0])


# --- table and answer from hand-made records -----------------------------------------


def _record(run, seed, fvd, interval=None, speed=0.2):
  return {
    "run": run,
    "kind": "video",
    "seed": seed,
    "fvd": fvd,
    "fvd_interval": list(interval or (fvd - 5.0, fvd + 5.0)),
    "motion": {
      "speed": speed,
      "path_speed": 0.3,
      "straightness": speed / 0.3,
      "centre_distance": 7.0,
      "frame_change": 4.0,
    },
  }


def _arm(label, fvds, expected=3):
  return study_stats.Arm(
    label, tuple(_record(f"{label}{s}", s, v) for s, v in enumerate(fvds)), expected
  )


def test_answer_names_the_arm_whose_interval_lies_below_the_reference():
  ref = _arm("independent noise (lam=0)", [300.0, 310.0, 320.0])
  good = _arm("lam=0.5", [200.0, 205.0, 210.0])
  same = _arm("lam=0.25", [290.0, 330.0, 310.0])
  text = study_stats.answer([ref, same, good], ref.label)
  assert text == (
    "lam=0.5 beats independent noise (lam=0): FVD "
    f"{study_stats.fvd_text(good)} vs {study_stats.fvd_text(ref)}."
  )
  assert text.startswith("lam=0.5 beats independent noise (lam=0): FVD 205.0 [")
  # The other way round: the reference beats an arm whose interval lies above its own.
  worse = _arm("lam=0.5", [500.0, 505.0, 510.0])
  assert study_stats.answer([ref, worse], ref.label).startswith(
    "independent noise (lam=0) beats lam=0.5: FVD 310.0 ["
  )


def test_answer_says_the_arms_do_not_separate_when_intervals_overlap():
  ref = _arm("from scratch (lam=0.5)", [300.0, 400.0, 350.0])
  other = _arm("image-pretrained base (lam=0.5)", [280.0, 390.0, 330.0])
  text = study_stats.answer([ref, other], ref.label)
  assert text.startswith("The arms do not separate at this scale (FVD, 95% intervals: ")
  assert "from scratch (lam=0.5) 350.0 [" in text and "image-pretrained base" in text


def test_answer_and_table_of_an_unfinished_study():
  ref = _arm("independent noise (lam=0)", [300.0, 310.0])
  empty = study_stats.Arm("lam=0.5", (), 3)
  assert study_stats.answer([ref, empty], ref.label).startswith("Not finished: 4 of 6 runs")
  table = study_stats.markdown_table(
    [ref, empty], {"speed": 0.29, "straightness": 0.84, "centre_distance": 8.3}
  )
  rows = table.splitlines()
  assert rows[2].startswith("| independent noise (lam=0) | 2 of 3 | 305.0 [")
  assert "s0: 300.0 [295.0, 305.0]; s1: 310.0 [305.0, 315.0]" in rows[2]
  assert rows[3] == "| lam=0.5 | 0 of 3 | pending | | | | |"
  assert rows[4] == "| data (real clips) | | | | 0.29 | 0.84 | 8.3 |"


def test_motion_undefined_in_a_run_is_skipped_not_a_crash():
  # study_runner.motion_stats writes None where a run's samples have no object to follow.
  runs = [_record("a", 0, 100.0, speed=0.2), _record("b", 1, 110.0, speed=0.4)]
  runs.append(_record("c", 2, 120.0))
  runs[2]["motion"]["speed"] = None
  arm = study_stats.Arm("lam=0.5", tuple(runs), 3)
  assert arm.motion_mean("speed") == pytest.approx(0.3)
  none = study_stats.Arm("lam=0", (runs[2],), 1)
  assert math.isnan(none.motion_mean("speed"))
  assert "| lam=0 | 1 of 1 | 120.0 [115.0, 125.0] | s2: 120.0 [115.0, 125.0] | n/a |" in (
    study_stats.markdown_table([none])
  )


def test_one_seed_arm_takes_its_runs_bootstrap_interval():
  arm = study_stats.Arm("lam=0.5", (_record("a", 0, 100.0, (90.0, 130.0)),), 1)
  assert arm.interval == (90.0, 130.0)


# --- the run list ----------------------------------------------------------------------


def test_runs_are_the_two_studies_at_the_recipes_training():
  settings = ds.StudySettings()
  runs = ds.runs(settings)
  ids = [r.run_id for r in runs]
  # 3 lams x 3 seeds, and per seed an image run and a pretrained lam 0.5 run; the
  # scratch arm of the pretraining study is the decomposition study's lam 0.5.
  assert len(ids) == len(set(ids)) == 9 + 3 + 3
  assert ids[:5] == [
    "lam0_seed0",
    "lam0.25_seed0",
    "lam0.5_seed0",
    "image_seed0",
    "lam0.5_pretrained_seed0",
  ]
  video = [r for r in runs if r.kind == "video"]
  recipe = demo.get_config()
  assert {(r.config.train.num_steps, r.config.train.batch_size) for r in video} == {
    (recipe.train.num_steps, recipe.train.batch_size)
  }
  assert {r.config.sample.num_steps for r in video} == {recipe.sample.num_steps}
  by_id = {r.run_id: r for r in runs}
  assert by_id["lam0_seed1"].config.diffusion.noise_mode == "standard"
  assert by_id["lam0.25_seed1"].config.diffusion.noise_mode == "decomposed"
  assert by_id["lam0.5_pretrained_seed2"].base_from == "image_seed2"
  assert by_id["image_seed2"].kind == "image_base"
  assert by_id["image_seed2"].config.train.num_steps == demo_image.get_config().train.num_steps
  assert by_id["image_seed2"].config.seed == ds.IMAGE_SEED_OFFSET + 2  # its own init
  assert [r.config.seed for r in runs if r.run_id.endswith("seed1")] == [1, 1, 1, 1001, 1]
  # A study of one run list: decomposition alone has no image runs.
  only = ds.runs(ds.StudySettings(studies=("decomposition",)))
  assert [r.run_id for r in only if r.kind == "image_base"] == []


def test_shorter_training_scales_the_warmup():
  c = ds.video_config(ds.StudySettings(train_steps=60), 0.5, 0)
  recipe = demo.get_config()
  assert c.train.num_steps == 60
  assert c.optim.warmup_steps == int(recipe.optim.warmup_steps * 60 / recipe.train.num_steps)


def test_bad_settings_name_the_field():
  with pytest.raises(ValueError, match=r"num_real=1; FVD needs >= 2"):
    ds.StudySettings(num_real=1).validate()
  with pytest.raises(ValueError, match=r"compares with lam=0"):
    ds.StudySettings(lams=(0.25, 0.5)).validate()
  with pytest.raises(ValueError, match=r"studies=\('table9',\)"):
    ds.StudySettings(studies=("table9",)).validate()


# --- the results file ------------------------------------------------------------------


def _full_record(run="lam0_seed0"):
  return {
    **_record(run, 0, 120.0),
    "train_steps": 2,
    "batch_size": 2,
    "final_loss": 0.5,
    "seconds": 1.0,
    "commit": "abc",
    "num_videos": 2,
    "num_real": 2,
    "extractor": "standin",
    "sampler": {},
  }


def test_results_file_keeps_whole_records_and_drops_a_cut_short_last_line(tmp_path):
  study_runner.append_result(tmp_path, _full_record("a"))
  with (tmp_path / study_runner.RESULTS).open("a") as f:
    f.write('{"run": "b", "ki')  # a kill while writing
  assert list(study_runner.read_results(tmp_path)) == ["a"]
  study_runner.append_result(tmp_path, _full_record("c"))  # starts on a line of its own
  assert list(study_runner.read_results(tmp_path)) == ["a", "c"]
  bad = dict(_full_record("d"))
  del bad["fvd_interval"]
  with pytest.raises(ValueError, match=r"new record: the record lacks \['fvd_interval'\]"):
    study_runner.append_result(tmp_path, bad)


def test_a_rerun_with_other_settings_is_refused(tmp_path):
  study_runner.check_settings(tmp_path, {"seeds": (0, 1), "num_videos": 256})
  study_runner.check_settings(tmp_path, {"seeds": [0, 1], "num_videos": 256})  # same
  with pytest.raises(cli.ConfigError, match=r"num_videos: 256 there, 16 now"):
    study_runner.check_settings(tmp_path, {"seeds": (0, 1), "num_videos": 16})


def test_protocol_length_repeats_frames_for_short_clips():
  clips = np.arange(2 * 8, dtype=np.uint8).reshape(2, 8, 1, 1, 1).repeat(3, axis=-1)
  out = study_runner.protocol_length(clips, 16)
  assert out.shape == (2, 16, 1, 1, 3)
  np.testing.assert_array_equal(out[:, ::2], clips)
  np.testing.assert_array_equal(out[:, 1::2], clips)
  assert study_runner.protocol_length(clips, 8) is clips


@pytest.mark.flow  # a process start: the user's command
def test_budget_zero_starts_nothing_and_exits_75(tmp_path):
  out = tmp_path / "study"
  proc = subprocess.run(
    [sys.executable, "-m", "benchmarks.decomposition_study", f"--out={out}", "--budget_minutes=0"],
    cwd=ROOT,
    env=dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=600,  # a process start: minutes on 2 cores shared with CI
  )
  assert proc.returncode == cli.PREEMPTED, proc.stderr[-2000:]
  assert "not finished: 0 of 15 runs done" in proc.stderr
  assert not (out / study_runner.RESULTS).exists() and not (out / "runs").exists()
  assert not (out / study_runner.REAL).exists()  # no clip read, no I3D loaded
  assert "Not finished: 9 of 9 runs" in (out / "decomposition.md").read_text()
  assert "Not finished: 6 of 6 runs" in (out / "pretraining.md").read_text()
  assert json.loads((out / study_runner.SETTINGS).read_text())["num_videos"] == 256


# --- a tiny study, run twice -------------------------------------------------------------


def _standin(videos):
  """Cheap 'features': per-clip channel means, frame-difference energy and spread."""
  v = np.asarray(videos, np.float32) / 255.0
  return np.concatenate(
    [
      v.mean(axis=(1, 2, 3)),
      np.abs(np.diff(v, axis=1)).mean(axis=(1, 2, 3)),
      v.std(axis=(1, 2, 3)),
    ],
    axis=1,
  )


STANDIN = lambda: FeatureExtractor("standin", _standin, batch_size=2, num_frames=8)  # noqa: E731


def _tiny(**kw):
  fields = dict(
    config_arg="setting=tiny",
    studies=("decomposition",),
    lams=(0.0,),
    seeds=(0, 1),
    train_steps=2,
    num_videos=2,
    num_real=3,
    sampler_steps=2,
    sample_batch=2,
    bootstrap=5,
  )
  return ds.StudySettings(**{**fields, **kw})


def _files(folder: Path) -> dict[str, int]:
  return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.slow  # two tiny trainings and samplings (~40-60 s on 2 busy cores)
def test_a_rerun_skips_finished_runs_and_retrains_nothing(tmp_path, monkeypatch):
  out = tmp_path / "study"
  status = ds.study(_tiny(), out, extractor_factory=STANDIN)
  assert (status.code, status.done, status.total) == (cli.DONE, 2, 2)
  results = study_runner.read_results(out)
  assert list(results) == ["lam0_seed0", "lam0_seed1"]
  for record in results.values():
    study_runner.check_record(record, "test")
    assert record["noise_mode"] == "standard" and record["train_steps"] == 2
    assert record["num_videos"] == 2 and record["num_real"] == 3
    assert record["fvd_interval"][0] <= record["fvd_interval"][1]
    assert np.isfinite(record["fvd"]) and np.isfinite(record["final_loss"])
  assert (out / "runs" / "lam0_seed0" / "checkpoints").is_dir()
  text = (out / "decomposition.md").read_text()
  assert "| independent noise (lam=0) | 2 of 2 |" in text
  assert "The arms do not separate at this scale" in text

  before_text = (out / study_runner.RESULTS).read_text()
  before_files = _files(out / "runs")

  def no_training(config, workdir):
    raise AssertionError(f"{workdir} trained again")

  monkeypatch.setattr(study_runner, "train", no_training)
  status = ds.study(_tiny(), out, extractor_factory=STANDIN)
  assert (status.code, status.done) == (cli.DONE, 2)
  assert (out / study_runner.RESULTS).read_text() == before_text
  assert _files(out / "runs") == before_files
  # Other settings in the same folder: refused before anything runs.
  with pytest.raises(cli.ConfigError, match="num_videos: 2 there, 4 now"):
    ds.study(dataclasses.replace(_tiny(), num_videos=4), out, extractor_factory=STANDIN)


@pytest.mark.slow  # three tiny trainings, one of the image model (~3-5 min on 2 busy cores)
def test_pretraining_study_starts_the_base_from_the_image_run(tmp_path):
  from videofusion_jax.convert.converted import load_converted
  from videofusion_jax.models.from_config import model_spec, videofusion_config
  from videofusion_jax.sampling.generate import load_ema_params

  out = tmp_path / "study"
  settings = _tiny(studies=("pretraining",), seeds=(0,), image_steps=2)
  status = ds.study(settings, out, extractor_factory=STANDIN)
  assert (status.code, status.done, status.total) == (cli.DONE, 3, 3)
  results = study_runner.read_results(out)
  assert list(results) == ["lam0.5_seed0", "image_seed0", "lam0.5_pretrained_seed0"]
  assert results["image_seed0"]["kind"] == "image_base"
  assert results["lam0.5_pretrained_seed0"]["base"] == "image-pretrained"

  # The exported folder is the image run's EMA base generator, in the layout (and with
  # the U-Net) that train.init_base_from checks against the video recipe's model.base.
  image_config = ds.image_config(settings, 0)
  video_config = ds.video_config(settings, 0.5, 0)
  unet, exported = load_converted(out / results["image_seed0"]["base_unet"])
  assert unet == videofusion_config(video_config).base_unet()
  _, image_ema = load_ema_params(model_spec(image_config), image_config, out / "runs/image_seed0")
  image_base = nnx.to_pure_dict(image_ema)["base"]
  for a, b in zip(jax.tree.leaves(image_base), jax.tree.leaves(exported)):
    np.testing.assert_array_equal(np.asarray(a), b)

  # The pretrained run started there: after 2 Adam steps its base is within a few
  # learning rates of the export, while the run from scratch has its own random init
  # (the image run's seed is another: IMAGE_SEED_OFFSET).
  def base_gap(run):
    _, ema = load_ema_params(model_spec(video_config), video_config, out / "runs" / run)
    return max(
      float(np.abs(np.asarray(a) - b).max())
      for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(ema)["base"]), jax.tree.leaves(exported))
    )

  assert base_gap("lam0.5_pretrained_seed0") < 3 * video_config.optim.lr
  assert base_gap("lam0.5_seed0") > 0.05
  assert "| image-pretrained base (lam=0.5) | 1 of 1 |" in (out / "pretraining.md").read_text()
