"""Sampling uses the config saved with the checkpoint (sampling/run_config.py), through the real
CLIs: a run trained with `--config.data.image_size=16` (and 4 frames) from a config file
that says 32 (and 8) samples 4-frame 16x16 videos without repeating the overrides; an
override or a config file that contradicts the checkpoint is refused, naming the field,
with exit 2 and nothing written.

The refusals come before any model is built, so they run against a checkpoint that
holds the saved config of such a run beside a stand-in state (seconds). The whole path,
the train CLI on a folder of one real mp4 (fewer videos than the batch of 2) and then
the sample CLI, takes about a minute of CPU even with the compilation cache: it is in
`make test-slow`.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import demo
from tests.data.test_clip_windows import _pan
from tests.test_faults import HANG, TINY
from videofusion_jax import cli
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.data import video_io
from videofusion_jax.metrics.evaluation import EvalSettings, evaluate
from videofusion_jax.metrics.features import FeatureExtractor
from videofusion_jax.sampling.run_config import checkpoint_config, merge_with_saved

ROOT = Path(__file__).resolve().parents[1]

CONFIG_FILE = """\
from configs import folder


def get_config(path=""):
  c = folder.get_config(path)
  c.data.image_size = 32    # the file's sizes; the runs override both on the command line
  c.data.num_frames = 8
  return c
"""
# What the train command adds to the file (test_faults' tiny run, at 16x16).
TRAIN_OVERRIDES = [
  *[a for a in TINY[1:] if not a.startswith("--config.data.num_frames")],
  "--config.data.num_frames=4",
  "--config.data.image_size=16",
]


def _cli(module, *args):
  return subprocess.run(
    [sys.executable, "-m", f"videofusion_jax.{module}", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=HANG,
  )


def _config_file(root: Path) -> tuple[str, Path]:
  """(the --config flag, the videos folder): the file says 32x32 and 8 frames."""
  video_io.write_mp4(root / "videos" / "pan.mp4", _pan(30))
  (root / "tiny32.py").write_text(CONFIG_FILE)
  return f"--config={root / 'tiny32.py'}:{root / 'videos'}", root / "videos"


def _load(path: Path, arg: str):
  spec = importlib.util.spec_from_file_location("tiny32", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """(--config flag, workdir): step 1 saved with the config the train command makes
  (4 frames, 16x16), beside a stand-in state: what the refusals read."""
  root = tmp_path_factory.mktemp("saved")
  flag, videos = _config_file(root)
  config = _load(root / "tiny32.py", str(videos))
  config.data.num_frames, config.data.image_size = 4, 16
  ckpt = Checkpoints(root / "run")
  state = {"w": np.zeros(2, np.float32)}
  ckpt.save(1, state, state, None, config)
  ckpt.close()
  return flag, root / "run"


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_a_shape_override_that_contradicts_the_checkpoint_is_refused(saved):
  flag, run = saved
  out = _cli("sample", flag, f"--workdir={run}", "--config.data.image_size=32")
  assert out.returncode == cli.BAD_INPUT, out.stderr[-3000:]
  line = out.stderr.strip().splitlines()[-1]
  assert line.startswith(
    f"error: step 1 in {run}/checkpoints was trained with other "
    "settings: --config.data.image_size=32 (checkpoint: 16)."
  ), line
  assert "Traceback" not in out.stderr
  assert not (run / "samples").exists()


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_another_runs_config_file_is_refused_naming_each_field(saved, tmp_path):
  flag, run = saved
  other = tmp_path / "other.py"
  other.write_text(
    CONFIG_FILE.replace(
      "  return c",
      "  c.model.base.block_out_channels = (32, 32)\n  c.diffusion.lam = 0.9\n  return c",
    )
  )
  out = _cli("sample", f"--config={other}", f"--workdir={run}")
  assert out.returncode == cli.BAD_INPUT, out.stderr[-3000:]
  line = out.stderr.strip().splitlines()[-1]
  assert (
    "model.base.block_out_channels=[32, 32] in the config file (checkpoint: [32, 64])" in line
    and "diffusion.lam=0.9 in the config file (checkpoint: 0.25)" in line
  ), line
  assert not (run / "samples").exists()


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_evaluate_refuses_the_same_way_before_sampling(saved, tmp_path):
  flag, run = saved
  out = _cli(
    "evaluate",
    flag,
    f"--fake={run}",
    "--config.data.num_frames=8",
    f"--output={tmp_path / 'm.json'}",
  )
  assert out.returncode == cli.BAD_INPUT, out.stderr[-3000:]
  assert "--config.data.num_frames=8 (checkpoint: 4)" in out.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "m.json").exists()


# --- the whole path (make test-slow) ----------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(--config flag, workdir, the train CLI's result): one step of the train CLI at 16x16
  and 4 frames, on a folder of one video (fewer than the batch)."""
  root = tmp_path_factory.mktemp("trained")
  flag, _ = _config_file(root)
  out = _cli(
    "train", flag, *TRAIN_OVERRIDES, "--config.train.num_steps=1", f"--workdir={root / 'run'}"
  )
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  return flag, root / "run", out


@pytest.mark.slow  # the train CLI, then the sample CLI: ~70 s of CPU with a warm cache
def test_train_then_sample_without_repeating_the_overrides_writes_the_trained_size(
  trained, tmp_path
):
  flag, run, trained_out = trained
  # Said before the first step: the compile takes minutes on a CPU.
  compiling = trained_out.stderr.find("Compiling the train step")
  assert 0 <= compiling < trained_out.stderr.find("step 1:"), trained_out.stderr[-3000:]
  run = shutil.copytree(run, tmp_path / "run")
  out = _cli(
    "sample",
    flag,
    f"--workdir={run}",
    "--config.sample.num_steps=2",
    "--config.sample.num_videos=2",
  )
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  first = out.stdout.splitlines()[0]
  assert first.startswith("config: saved with step 1 in "), out.stdout
  assert (
    "; taken from it, not the config file: data.num_frames=4 (file: 8), "
    "data.image_size=16 (file: 32); " in first
  )
  assert first.endswith("; overrides: sample.num_steps=2, sample.num_videos=2; mode: videos")
  mp4s = sorted((run / "samples").glob("*.mp4"))
  assert [p.name for p in mp4s] == ["video_000.mp4", "video_001.mp4"]
  for path in mp4s:
    assert video_io.read_video(path).shape == (4, 16, 16, 3)  # the file says 8 x 32x32


def _mean_colour(videos):
  return videos.astype(np.float32).mean(axis=(2, 3)).reshape(len(videos), -1)


@pytest.mark.slow  # samples the trained model (its fixture trains: see above)
def test_evaluate_samples_at_the_checkpoints_shape(trained, tmp_path):
  flag, run, _ = trained
  path, videos = flag.removeprefix("--config=").split(":")
  config = _load(Path(path), videos)
  config.sample.num_steps = 2
  run_cfg = checkpoint_config(config, str(run), {"sample.num_steps": 2})
  settings = EvalSettings(
    num_videos=2,
    batch_size=2,
    metrics=("fvd",),
    num_frames=4,
    image_size=16,
    cache_dir=str(tmp_path / "cache"),
  )
  standin = {"i3d": FeatureExtractor("mean-colour", _mean_colour, batch_size=2)}
  for length in (20, 30):  # FVD needs 2 real videos
    video_io.write_mp4(tmp_path / "real" / f"pan{length}.mp4", _pan(length))
  out = evaluate(
    str(tmp_path / "real"),
    str(run),
    settings,
    config=run_cfg.config,
    extractors=standin,
    output=str(tmp_path / "m.json"),
  )
  assert out["fake"]["video_shape"] == [4, 16, 16, 3]  # the file says 8 x 32x32
  assert out["fake"]["count"] == 2 and np.isfinite(out["metrics"]["fvd"])


# --- the rules on their own (no checkpoint) ----------------------------------------------


def _saved():
  config = demo.get_config()
  config.data.image_size, config.data.num_frames = 32, 4
  return config.to_dict()


def test_merge_takes_the_data_shape_and_keeps_the_files_sampling_settings():
  config = demo.get_config()
  config.sample.num_steps = 7  # the user's, now
  run = merge_with_saved(config, _saved(), step=5, directory="W")
  assert (run.config.data.image_size, run.config.data.num_frames) == (32, 4)
  assert run.config.sample.num_steps == 7
  assert config.data.image_size == 16  # the caller's config unchanged
  assert run.describe() == (
    "config: saved with step 5 in W; taken from it, not the "
    "config file: data.num_frames=4 (file: 6), data.image_size=32 "
    "(file: 16); overrides: none"
  )


def test_an_override_equal_to_the_checkpoint_settles_a_model_field():
  saved = _saved()
  saved["model"]["base"]["layers_per_block"] = 2
  config = demo.get_config()
  with pytest.raises(
    ConfigError,
    match=r"model.base.layers_per_block=1 in the config "
    r"file \(checkpoint: 2\)",
  ):
    merge_with_saved(config, saved, step=5, directory="W")
  config.model.base.layers_per_block = 2
  run = merge_with_saved(
    config, saved, step=5, directory="W", overrides={"model.base.layers_per_block": 2}
  )
  assert run.config.model.base.layers_per_block == 2
  assert run.overrides == ("model.base.layers_per_block=2",)
  config.model.base.layers_per_block = 3  # the weights cannot change shape
  with pytest.raises(
    ConfigError,
    match=r"--config.model.base.layers_per_block=3 "
    r"\(checkpoint: 2\)",
  ):
    merge_with_saved(
      config, saved, step=5, directory="W", overrides={"model.base.layers_per_block": 3}
    )
  config.model.base.layers_per_block = 2
  # An execution knob is no shape: it may differ from the checkpoint's.
  config.model.dtype = "bfloat16"
  run = merge_with_saved(
    config, saved, step=5, directory="W", overrides={"model.dtype": "bfloat16"}
  )
  assert run.config.model.dtype == "bfloat16"


def test_a_section_override_counts_for_the_fields_under_it():
  config = demo.get_config()
  config.data.image_size = 16
  with pytest.raises(ConfigError, match=r"--config.data.image_size=16 \(checkpoint: 32\)"):
    merge_with_saved(config, _saved(), step=5, directory="W", overrides={"data": None})


def test_without_a_checkpoint_the_config_is_used_as_given(tmp_path):
  config = demo.get_config()
  run = checkpoint_config(config, str(tmp_path / "empty"), {"sample.num_steps": 3})
  assert run.config is config and run.step is None
  assert run.describe().startswith("config: the --config file (no checkpoint in ")
  assert run.describe().endswith("overrides: sample.num_steps=3")
