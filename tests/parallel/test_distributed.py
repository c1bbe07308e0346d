"""Two processes on 127.0.0.1 (gloo collectives) train the tiny config together; through
the train CLI, a SIGTERM to one of them stops both at the same step."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from etils import epath

from videofusion_jax import cli, storage

ROOT = Path(__file__).parents[2]  # the repository: `python -m tests.parallel...`


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # two cold compiles at once: ~1.5 min on 2 cores
def test_two_processes_train_together_and_agree_on_the_loss(tmp_path):
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "tests.parallel.two_processes",
        str(port),
        str(i),
        str(tmp_path / "run"),
      ],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  results = [
    json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:]) for out, _ in outs
  ]
  assert sorted(r["process"] for r in results) == [0, 1]
  assert all(r["processes"] == 2 and r["devices"] == 2 for r in results)
  assert results[0]["loss"] == results[1]["loss"]  # one global step, one loss
  # Both processes wrote the checkpoint together; only process 0 wrote metrics.
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [1, 2]


# --- the train CLI on two processes: preemption agreed, a local workdir refused ---------

TINY = [
  f"--config={ROOT}/configs/demo.py",
  "--config.data.num_frames=4",
  "--config.data.num_clips=64",
  "--config.train.batch_size=4",
  "--config.train.log_every=1",
  "--config.train.tensorboard=False",
]
HANG = 900  # bounds a hang only; a working run ends far sooner


def start_two(workdir, *overrides, cwd=ROOT) -> list[subprocess.Popen]:
  """`python -m videofusion_jax.train` as processes 0 and 1 of one run (gloo)."""
  port = free_port()
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
  )
  env["XLA_FLAGS"] = " ".join(
    f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
  )  # one CPU device each
  procs = []
  for i in range(2):
    # Output to files, not pipes: a run logging every step for a minute would fill a
    # pipe nobody reads yet and block.
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    procs.append(
      subprocess.Popen(
        [
          sys.executable,
          "-m",
          "videofusion_jax.train",
          *TINY,
          f"--workdir={workdir}",
          "--config.distributed.enabled=true",
          f"--config.distributed.coordinator_address=127.0.0.1:{port}",
          "--config.distributed.num_processes=2",
          f"--config.distributed.process_id={i}",
          *overrides,
        ],
        cwd=cwd,
        stdout=out,
        stderr=err,
        text=True,
        env=env,
      )
    )
    procs[-1].out, procs[-1].err = out, err
  return procs


@contextlib.contextmanager
def killed_when_left(procs):
  """A failed assertion or a timeout must not leave two training processes behind (a
  run of 100,000 steps would take the machine's cores for the rest of the suite)."""
  try:
    yield
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def read(file) -> str:
  file.seek(0)
  return file.read()


def finish(procs):
  for p in procs:
    p.wait(timeout=HANG)
  return [(p.returncode, read(p.out), read(p.err)) for p in procs]


def fresh(path) -> epath.Path:
  """`path`; on GCS with gcsfs's cached listings dropped: this process listed the prefix
  before the runs (other processes) wrote to it."""
  path = epath.Path(path)
  if storage.is_remote(path):
    epath.backend.fsspec_backend.fs(os.fspath(path)).invalidate_cache()
  return path


def steps_logged(workdir) -> list[int]:
  path = fresh(workdir) / "metrics.jsonl"  # process 0 writes it, one line per step
  return (
    [json.loads(l)["step"] for l in path.read_text().splitlines() if l.endswith("}")]
    if path.exists()
    else []
  )


def saved_steps(workdir) -> list[int]:
  return sorted(int(p.name) for p in (fresh(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def test_a_local_workdir_on_two_processes_is_refused_before_anything_is_written(tmp_path):
  procs = start_two(tmp_path / "run", "--config.train.num_steps=2")
  with killed_when_left(procs):
    results = finish(procs)
  for code, _, err in results:
    assert code == cli.BAD_INPUT, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(
      f"error: --workdir={tmp_path / 'run'} is a local path, but this run has 2 processes"
    ), err[-3000:]
    assert "allow_local_workdir_multihost=True" in last
  assert not (tmp_path / "run").exists()


@pytest.mark.slow  # two 2-process CLI runs: 10 min measured on 2 busy cores (load 7)
def test_sigterm_on_one_process_stops_both_at_the_same_step_and_the_rerun_resumes(tmp_path):
  """Only process 1 gets SIGTERM; JAX's preemption service tells process 0, both save
  the same step together and exit 75, and the same command (shorter) then ends with 0."""
  stop_one_then_resume(
    tmp_path / "run", "--config.train.allow_local_workdir_multihost=True"
  )  # one machine


def stop_one_then_resume(run, *overrides, cwd=ROOT):
  """The test above on workdir `run` (a local folder or a gs:// prefix)."""
  shared = (*overrides, "--config.train.checkpoint_every=100000")
  procs = start_two(run, "--config.train.num_steps=100000", *shared, cwd=cwd)
  with killed_when_left(procs):
    deadline = time.monotonic() + HANG
    while len(steps_logged(run)) < 2:  # both compiled and stepping
      assert all(p.poll() is None for p in procs), read(procs[0].err)[-3000:]
      assert time.monotonic() < deadline, "no step was logged:\n" + "\n".join(
        read(p.err)[-4000:] for p in procs
      )
      time.sleep(0.05)
    procs[1].send_signal(signal.SIGTERM)
    results = finish(procs)
  for code, _, err in results:
    assert code == cli.PREEMPTED, err[-3000:]
  [step] = saved_steps(run)  # one checkpoint, written by both processes together
  assert 2 <= step < 100000 and steps_logged(run)[-1] == step
  for _, out, _ in results:
    assert f"stopped at step {step} of 100000" in out
  assert "All processes stop at step" in results[0][2]  # process 0 was not signalled

  procs = start_two(run, f"--config.train.num_steps={step + 2}", *shared, cwd=cwd)
  with killed_when_left(procs):
    results = finish(procs)
  for code, out, err in results:
    assert code == cli.DONE, err[-3000:]
    assert "training done" in out
  assert saved_steps(run)[-1] == step + 2
  assert steps_logged(run) == list(range(1, step + 3))  # no step twice, none missing
