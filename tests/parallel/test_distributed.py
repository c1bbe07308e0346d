"""Two processes on 127.0.0.1 (gloo collectives) train the tiny config together."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # two cold compiles at once: ~1.5 min on 2 cores
def test_two_processes_train_together_and_agree_on_the_loss(tmp_path):
  port = free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  procs = [subprocess.Popen([sys.executable, str(HERE / "two_processes.py"), str(port),
                             str(i), str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
           for i in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  results = [json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
             for out, _ in outs]
  assert sorted(r["process"] for r in results) == [0, 1]
  assert all(r["processes"] == 2 and r["devices"] == 2 for r in results)
  assert results[0]["loss"] == results[1]["loss"]  # one global step, one loss
  # Both processes wrote the checkpoint together; only process 0 wrote metrics.
  assert (tmp_path / "run" / "checkpoints" / "2").is_dir()
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["step"] for l in lines] == [1, 2]
