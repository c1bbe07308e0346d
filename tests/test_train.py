"""Train -> checkpoint -> resume -> sample, on the built-in synthetic set."""

import contextlib
import json
import os
import re
import shutil
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.configs import demo, folder
from videofusion_jax.data import video_io
from videofusion_jax.metric_writers import MetricWriter
from videofusion_jax.sampling.generate import sample
from videofusion_jax.training.loop import outcome, train
from videofusion_jax.training.preemption import Preemption


def _restore_all(workdir, step):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  out = mngr.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), ema=ocp.args.StandardRestore())
  )
  mngr.close()
  return jax.tree.leaves(out["state"]), jax.tree.leaves(out["ema"])


def _metrics(workdir):
  return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  """The reference run: 3 steps straight through, saved at step 2 and (at exit) step 3,
  its stderr written to a file as under nohup or in a pod -> (workdir, stderr text).
  The tests below work on copies of it, so each costs at most one more train()."""
  workdir = tmp_path_factory.mktemp("straight")
  config = demo.get_config("setting=tiny")  # 3 steps, saved at 2 and 3
  config.train.tensorboard = True
  log = tmp_path_factory.mktemp("straight_stderr") / "stderr.txt"
  with open(log, "w") as f, contextlib.redirect_stderr(f):
    train(config, str(workdir))
  return workdir, log.read_text()


@pytest.fixture(scope="module")
def straight(straight_run):
  return straight_run[0]


def _stopped_at(run, workdir, step):
  """`run` as a run stopped right after saving `step` would have left it."""
  shutil.copytree(run, workdir)
  for later in (workdir / "checkpoints").iterdir():
    if later.name.isdigit() and int(later.name) > step:
      shutil.rmtree(later)
  lines = [l for l in _metrics(workdir) if l["step"] <= step]
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
  return workdir


def test_straight_run_logs_every_step_and_saves_at_exit(straight):
  lines = _metrics(straight)
  assert [l["step"] for l in lines] == [1, 2, 3]
  assert {"loss", "loss_centre", "loss_residual", "lr", "steps_per_sec"} <= set(lines[0])
  assert list((straight / "tensorboard").iterdir())
  saved = sorted(int(p.name) for p in (straight / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == [2, 3]  # every 2 steps, and at exit


def test_progress_in_a_log_file_is_one_plain_line_per_update(straight_run):
  _, err = straight_run
  assert "\r" not in err
  lines = [l for l in err.splitlines() if l.startswith("train ")]
  # The first update (it holds the compile) and the last are always written.
  assert lines[0].startswith("train 1/3 steps") and lines[-1].startswith("train 3/3 steps")
  assert all(re.search(r"\| loss \d+\.\d{4}$", l) for l in lines)


def test_ctrl_c_saves_the_step_it_stopped_at(tmp_path, monkeypatch):
  write = MetricWriter.write

  def write_then_interrupt(self, step, scalars):
    write(self, step, scalars)
    if step == 2:  # Ctrl-C lands between steps 2 and 3
      os.kill(os.getpid(), signal.SIGINT)

  monkeypatch.setattr(MetricWriter, "write", write_then_interrupt)
  config = demo.get_config("setting=tiny")
  config.train.num_steps = 50
  config.train.checkpoint_every = 50  # no periodic save before the interrupt
  before = signal.getsignal(signal.SIGINT)
  try:
    train(config, str(tmp_path))
  except KeyboardInterrupt:
    pytest.fail("Ctrl-C interrupted training instead of saving and stopping")
  assert [l["step"] for l in _metrics(tmp_path)] == [1, 2]
  saved = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
  assert saved == ["2"]
  assert signal.getsignal(signal.SIGINT) is before  # restored
  stopped = outcome(str(tmp_path), 50, {"loss": 0.5})
  assert stopped.stopped_early and stopped.line.startswith(
    f"stopped at step 2 of 50, saved in {tmp_path} (the same command resumes): loss=0.5"
  )
  done = outcome(str(tmp_path), 2, {})
  assert not done.stopped_early and done.line.startswith("training done")


def test_sigterm_and_a_first_ctrl_c_ask_to_save_a_second_ctrl_c_interrupts():
  before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  for signum in (signal.SIGTERM, signal.SIGINT):
    preemption = Preemption()
    name = signal.Signals(signum).name
    try:
      try:
        signal.raise_signal(signum)  # its handler has run when this returns
      except KeyboardInterrupt:
        pytest.fail(f"{name} interrupted at once instead of asking to save")
      assert preemption.requested, name
      with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    finally:
      preemption.restore()
  assert {s: signal.getsignal(s) for s in before} == before


def test_resume_past_a_killed_save_is_bitwise_identical(straight, tmp_path):
  resumed = _stopped_at(straight, tmp_path / "resumed", 2)
  # What a save killed before orbax's final rename leaves: a temporary step directory.
  partial = resumed / "checkpoints" / "3.orbax-checkpoint-tmp-1700000000000000"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "half_written").write_bytes(b"\x00" * 10)
  assert Checkpoints(resumed).latest_step() == 2  # the partial save is never a candidate

  train(demo.get_config("setting=tiny"), str(resumed))  # resumes at 2: state, EMA and data position
  assert Checkpoints(resumed).latest_step() == 3
  (state_a, ema_a), (state_b, ema_b) = _restore_all(straight, 3), _restore_all(resumed, 3)
  assert len(state_a) == len(state_b) > 0 and len(ema_a) == len(ema_b) > 0
  for a, b in zip(state_a + ema_a, state_b + ema_b):
    np.testing.assert_array_equal(a, b)
  assert [l["loss"] for l in _metrics(resumed)] == [l["loss"] for l in _metrics(straight)]


def test_samples_load_the_checkpoint(straight, tmp_path):
  run = shutil.copytree(straight, tmp_path / "run")
  paths = sample(demo.get_config("setting=tiny"), str(run))
  assert [p.name for p in paths] == ["video_000.mp4", "video_001.mp4", "strip.png"]
  for path in paths[:2]:
    assert video_io.read_video(path).shape == (4, 16, 16, 3)


def test_incompatible_checkpoint_is_refused_by_field(straight, tmp_path):
  run = shutil.copytree(straight, tmp_path / "run")
  config = demo.get_config("setting=tiny")
  config.train.num_steps = 4
  config.model.base.block_out_channels = (32, 32)
  with pytest.raises(
    ValueError, match="model.base.block_out_channels: \\[32, 64\\] -> \\[32, 32\\]"
  ):
    train(config, str(run))
  assert Checkpoints(run).latest_step() == 3  # nothing lost


def test_one_step_on_a_folder_of_real_video_files(tmp_path):
  frames = np.zeros((10, 24, 32, 3), np.uint8)
  for i in range(10):
    frames[i, 6:14, 2 + 2 * i : 10 + 2 * i] = (30, 200, 90)
  for name in ("a", "b"):
    video_io.write_mp4(tmp_path / "videos" / "cls" / f"{name}.mp4", frames)
  config = folder.get_config(f"path={tmp_path / 'videos'},setting=tiny")
  config.train.num_steps = 1
  metrics = train(config, str(tmp_path / "run"))
  assert np.isfinite(metrics["loss"]) and Checkpoints(tmp_path / "run").latest_step() == 1


def test_missing_data_folder_fails_before_anything_is_written(tmp_path):
  config = folder.get_config(str(tmp_path / "absent"))
  with pytest.raises(ConfigError, match="absent does not exist"):
    train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
