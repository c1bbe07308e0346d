"""Fault injection on the real train CLI: divergence, corrupt and unwritable checkpoints,
SIGTERM and kill -9. Each test asserts what the run did (its exit code, its one line)
and that nothing good was lost: the newest good checkpoint is still there and restores.

The runs are subprocesses of `python -m videofusion_jax.train` on the tiny config (the
demo model on 4-frame 16x16 clips); a few cases that need a fault inside the process
(a NaN batch) or only the resume logic call `train()` itself.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from videofusion_jax import cli
from videofusion_jax.checkpoint import CheckpointError
from videofusion_jax.training import loop
from videofusion_jax.training.loop import train

pytestmark = pytest.mark.flow  # make test-flows (pyproject.toml: markers)

ROOT = Path(__file__).resolve().parents[1]
TINY = [
  "--config=configs/demo.py",
  "--config.data.num_frames=4",
  "--config.data.num_clips=64",
  "--config.train.batch_size=2",
  "--config.train.log_every=1",
  "--config.train.checkpoint_every=2",
  "--config.train.tensorboard=False",
]
# Bounds a hang only: a run that works finishes far sooner, even on a loaded CI machine.
HANG = 600


def tiny_config(num_steps):
  """What TINY runs from Python (the same config: the kill -9 test compares them)."""
  from videofusion_jax.configs import demo

  config = demo.get_config("setting=tiny")
  config.train.num_steps = num_steps
  return config


def run_cli(workdir, *overrides, module="train", timeout=HANG):
  cmd = [
    sys.executable,
    "-m",
    f"videofusion_jax.{module}",
    *TINY,
    f"--workdir={workdir}",
    *overrides,
  ]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def start_cli(workdir, *overrides):
  cmd = [sys.executable, "-m", "videofusion_jax.train", *TINY, f"--workdir={workdir}", *overrides]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def steps_logged(workdir) -> list[int]:
  path = Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(condition, what: str, proc=None):
  """Poll `condition` until it holds; fail naming `what` if the process ends first or
  the hang bound passes."""
  deadline = time.monotonic() + HANG
  while not condition():
    if proc is not None and proc.poll() is not None:
      pytest.fail(
        f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}"
      )
    if time.monotonic() > deadline:
      pytest.fail(f"timed out waiting for {what}")
    time.sleep(0.05)


def saved_steps(workdir) -> list[int]:
  return sorted(int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def restored_leaves(workdir, step):
  mngr = ocp.CheckpointManager(
    Path(workdir) / "checkpoints", options=ocp.CheckpointManagerOptions(read_only=True)
  )
  out = mngr.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), ema=ocp.args.StandardRestore())
  )
  mngr.close()
  return [np.asarray(x) for x in jax.tree.leaves((out["state"], out["ema"]))]


def assert_same_state(workdir_a, workdir_b, step):
  a, b = restored_leaves(workdir_a, step), restored_leaves(workdir_b, step)
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
  """4 steps straight through, saved at steps 2 and 4: what every fault starts from."""
  workdir = tmp_path_factory.mktemp("good")
  train(tiny_config(4), str(workdir))
  assert saved_steps(workdir) == [2, 4]
  return workdir


def copy_of(run, tmp_path, name="run"):
  return Path(shutil.copytree(run, tmp_path / name))


# --- divergence ------------------------------------------------------------------------


@pytest.mark.slow  # a CLI run to divergence: ~40-110 s on 2 cores (make test's 12-minute budget)
def test_a_diverging_run_keeps_its_good_checkpoints_and_exits_3(good_run, tmp_path):
  """lr=1e6 from step 4: the loss turns NaN within a few steps. Those steps are skipped,
  nothing non-finite is saved (so `sample` reads a finite checkpoint), and the run stops
  after max_nonfinite_steps of them with the steps named and exit code 3."""
  run = copy_of(good_run, tmp_path)
  out = run_cli(
    run,
    "--config.train.num_steps=30",
    "--config.optim.lr=1e6",
    "--config.optim.warmup_steps=0",
    "--config.train.max_nonfinite_steps=3",
  )
  assert out.returncode == cli.DIVERGED, out.stderr[-3000:]
  error = out.stderr.strip().splitlines()[-1]
  assert error.startswith("error: training diverged: steps ") and "max_nonfinite_steps=3" in error
  assert "last good checkpoint is step" in error
  assert 4 in saved_steps(run)  # the step it resumed from survives retention
  for step in saved_steps(run):
    assert all(np.isfinite(x).all() for x in restored_leaves(run, step) if x.dtype.kind == "f")
  logged = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
  assert logged[-1]["nonfinite_steps"] >= 1 and not np.isfinite(logged[-1]["loss"])


@pytest.mark.slow  # train() in-process; test_step.py pins the skip itself
def test_a_transient_non_finite_step_is_skipped_counted_and_training_goes_on(tmp_path, monkeypatch):
  """One clip of the data is NaN once: that step is skipped (counted in metrics.jsonl
  from then on), the rest train, and the checkpoint at the end is finite."""
  make_source = loop.make_source

  class PoisonOnce:
    def __init__(self, source):
      self.source, self.poisoned = source, False

    def __len__(self):
      return len(self.source)

    def __getitem__(self, index):
      item = dict(self.source[index])
      if not self.poisoned:
        self.poisoned = True
        item["video"] = np.full_like(item["video"], np.nan)
      return item

  monkeypatch.setattr(loop, "make_source", lambda *a, **k: PoisonOnce(make_source(*a, **k)))
  config = tiny_config(4)
  config.train.checkpoint_every = 100  # only the save at the end
  metrics = train(config, str(tmp_path))
  logged = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in logged] == [1, 2, 3, 4]
  bad = [l["step"] for l in logged if not np.isfinite(l["loss"])]
  assert len(bad) == 1  # which step depends on the reader threads' order
  assert [l["nonfinite_steps"] for l in logged] == [float(l["step"] >= bad[0]) for l in logged]
  assert metrics["nonfinite_steps"] == 1 and np.isfinite(metrics["loss"])
  assert saved_steps(tmp_path) == [4]
  assert all(np.isfinite(x).all() for x in restored_leaves(tmp_path, 4) if x.dtype.kind == "f")


def test_sample_refuses_a_checkpoint_holding_nan(good_run, tmp_path):
  """A NaN checkpoint written by other means (an older version, another tool) is refused
  by sample with the step named, not sampled into blank videos."""
  run = copy_of(good_run, tmp_path)
  mngr = ocp.CheckpointManager(run / "checkpoints")
  out = mngr.restore(
    4,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(),
      ema=ocp.args.StandardRestore(),
      config=ocp.args.JsonRestore(),
    ),
  )
  ema = jax.tree.map(lambda x: np.full_like(x, np.nan), out["ema"])
  mngr.save(
    6,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(out["state"]),
      ema=ocp.args.StandardSave(ema),
      config=ocp.args.JsonSave(out["config"]),
    ),
  )
  mngr.wait_until_finished()
  mngr.close()
  sampled = run_cli(
    run, "--config.sample.num_steps=2", "--config.sample.num_videos=2", module="sample"
  )
  assert sampled.returncode != 0
  assert "step 6" in sampled.stderr and "holds NaN or inf" in sampled.stderr
  assert not (run / "samples").exists()


# --- corrupt checkpoints ----------------------------------------------------------------


def _truncate_largest_array_file(step_dir: Path) -> Path:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
  largest = max(files, key=lambda p: p.stat().st_size)
  with open(largest, "r+b") as f:
    f.truncate(largest.stat().st_size // 3)
  return largest


@pytest.mark.slow  # a CLI resume: ~40-100 s on 2 cores (make test's 12-minute budget)
def test_a_truncated_array_file_moves_the_step_aside_and_resumes_from_the_last_intact(
  good_run, tmp_path
):
  run = copy_of(good_run, tmp_path)
  _truncate_largest_array_file(run / "checkpoints" / "4")
  out = run_cli(run, "--config.train.num_steps=4")
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  moved = [l for l in out.stderr.splitlines() if "checkpoint step 4 does not restore" in l]
  assert len(moved) == 1 and "checkpoints_corrupt/4" in moved[0]
  assert (run / "checkpoints_corrupt" / "4" / "state").is_dir()  # kept, not deleted
  assert saved_steps(run) == [2, 4]  # resumed at 2, saved 4 anew
  assert steps_logged(run) == [1, 2, 3, 4]  # each step once
  assert_same_state(good_run, run, 4)  # as if nothing had happened


@pytest.mark.slow  # the same fallback as the truncated file's, by train() in-process
@pytest.mark.parametrize("damage", ["missing state/_METADATA", "missing ema"])
def test_other_damage_falls_back_to_the_older_step(good_run, tmp_path, damage):
  run = copy_of(good_run, tmp_path)
  step_dir = run / "checkpoints" / "4"
  if damage == "missing ema":
    shutil.rmtree(step_dir / "ema")
  else:
    (step_dir / "state" / "_METADATA").unlink()
  train(tiny_config(5), str(run))
  assert (run / "checkpoints_corrupt" / "4").is_dir()
  assert saved_steps(run) == [2, 4, 5]
  assert steps_logged(run) == [1, 2, 3, 4, 5]


def test_when_no_step_restores_nothing_is_moved_and_the_error_lists_each(good_run, tmp_path):
  run = copy_of(good_run, tmp_path)
  for step in (2, 4):
    (run / "checkpoints" / str(step) / "state" / "_METADATA").unlink()
  with pytest.raises(
    CheckpointError,
    match=r"no checkpoint in .* restores: step 4: .*; "
    r"step 2: ",
  ):
    train(tiny_config(6), str(run))
  assert saved_steps(run) == [2, 4] and not (run / "checkpoints_corrupt").exists()


def test_a_resume_that_changes_the_clip_shape_is_refused(good_run, tmp_path):
  run = copy_of(good_run, tmp_path)
  out = run_cli(run, "--config.train.num_steps=6", "--config.data.num_frames=6")
  assert out.returncode == cli.BAD_INPUT
  assert "data.num_frames: 4 -> 6" in out.stderr.strip().splitlines()[-1]
  assert saved_steps(run) == [2, 4] and steps_logged(run) == [1, 2, 3, 4]


# --- an unwritable checkpoint folder ----------------------------------------------------


def test_an_unwritable_checkpoint_folder_fails_at_once_naming_it(tmp_path):
  """As root, permissions do not stop a write: `chattr +i` does."""
  folder = tmp_path / "run" / "checkpoints"
  folder.mkdir(parents=True)
  if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
    pytest.skip("chattr +i is not supported on this filesystem")
  try:
    out = run_cli(tmp_path / "run", "--config.train.num_steps=3")
  finally:
    subprocess.run(["chattr", "-i", str(folder)], check=True)
  assert out.returncode == cli.CHECKPOINT, out.stderr[-3000:]
  assert out.stderr.strip().splitlines()[-1] == (
    f"error: checkpoint folder {folder} is not writable: [Errno 1] Operation not permitted"
  )
  assert "Traceback" not in out.stderr and not list(folder.iterdir())


# --- signals ----------------------------------------------------------------------------


@pytest.mark.slow  # a CLI run: ~30-75 s on 2 cores (make test's 12-minute budget)
def test_sigterm_saves_and_exits_with_the_preempted_code(tmp_path):
  proc = start_cli(
    tmp_path, "--config.train.num_steps=1000", "--config.train.checkpoint_every=1000"
  )
  wait_for(lambda: len(steps_logged(tmp_path)) >= 2, "two steps were logged", proc)
  proc.send_signal(signal.SIGTERM)
  stdout, stderr = proc.communicate(timeout=HANG)
  assert proc.returncode == cli.PREEMPTED, stderr[-3000:]
  step = saved_steps(tmp_path)[-1]
  assert step >= 2 and steps_logged(tmp_path)[-1] == step
  assert f"stopped at step {step} of 1000" in stdout


@pytest.mark.slow  # two CLI runs; the random kills below cover it and more
def test_kill_9_then_resume_repeats_no_step_and_ends_bitwise_equal(good_run, tmp_path):
  """Killed at once after step 3 is logged (step 2 saved): the resume recomputes step 3,
  and metrics.jsonl holds every step once."""
  run = tmp_path / "killed"
  proc = start_cli(run, "--config.train.num_steps=1000")
  wait_for(lambda: 3 in steps_logged(run), "step 3 was logged", proc)
  proc.kill()
  proc.communicate(timeout=HANG)
  done = run_cli(run, "--config.train.num_steps=4")
  assert done.returncode == cli.DONE, done.stderr[-3000:]
  assert steps_logged(run) == [1, 2, 3, 4]
  assert_same_state(good_run, run, 4)


# --- config errors before anything is written -------------------------------------------


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.optim.lr=-0.001", "error: optim.lr=-0.001; expected > 0"),
    ("--config.diffusion.lam=1.5", "error: diffusion.lam=1.5; expected 0 <= lam <= 1"),
    ("--config.data.image_size=15", "error: data.num_frames=4, data.image_size=15"),
    ("--config.data.num_frames=1", "error: data.num_frames=1, data.image_size=16"),
    ("--config.diffusion.lamm=0.3", "error: --config.diffusion.lamm: no such config field"),
    ("--config.train.max_nonfinite_steps=0", "error: train.max_nonfinite_steps=0; expected >= 1"),
  ],
)
def test_config_errors_are_one_line_before_the_workdir_exists(tmp_path, override, message):
  out = run_cli(tmp_path / "run", override)
  assert out.returncode == cli.BAD_INPUT
  assert out.stderr.strip().splitlines()[-1].startswith(message), out.stderr[-2000:]
  assert "Traceback" not in out.stderr and "futures" not in out.stderr
  assert not (tmp_path / "run").exists()


def test_a_folder_of_only_unreadable_videos_leaves_no_workdir(tmp_path):
  videos = tmp_path / "videos"
  videos.mkdir()
  for name in ("a.mp4", "b.avi"):
    (videos / name).write_bytes(b"\x00 not a video" * 100)
  cmd = [
    sys.executable,
    "-m",
    "videofusion_jax.train",
    f"--config=configs/folder.py:{videos}",
    *TINY[1:],
    f"--workdir={tmp_path / 'run'}",
  ]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=HANG)
  assert out.returncode == cli.BAD_INPUT, out.stderr[-2000:]
  assert (
    out.stderr.strip()
    .splitlines()[-1]
    .startswith(f"error: no video under data.path={videos} could be read")
  )
  assert not (tmp_path / "run").exists()


@pytest.mark.slow  # six CLI runs and a straight one
def test_five_kill_9s_at_random_moments_then_resume_end_as_a_straight_run(tmp_path):
  """kill -9 at random moments (seeded), a checkpoint every step so that some land
  during a save; each time the same command resumes. The end state equals an
  uninterrupted run's bit for bit and metrics.jsonl holds each step once."""
  rng = np.random.default_rng(0)
  run, steps = tmp_path / "killed", 16
  overrides = (f"--config.train.num_steps={steps}", "--config.train.checkpoint_every=1")
  kills = []
  for _ in range(5):
    proc = start_cli(run, *overrides)
    already = len(steps_logged(run))
    wait_for(lambda: len(steps_logged(run)) > already, "a new step was logged", proc)
    time.sleep(rng.uniform(0.0, 1.5))  # a random moment after that step, not a wait
    proc.kill()
    proc.communicate(timeout=HANG)
    kills.append(steps_logged(run)[-1] if steps_logged(run) else 0)
  done = run_cli(run, *overrides)
  assert done.returncode == cli.DONE, (kills, done.stderr[-3000:])
  assert steps_logged(run) == list(range(1, steps + 1)), kills
  straight = tmp_path / "straight"
  config = tiny_config(steps)
  config.train.checkpoint_every = 1
  train(config, str(straight))
  assert_same_state(straight, run, steps)
