"""benchmarks/long_video.py runs at a tiny size (its CLI, as a user runs it) and reports
sane numbers: every length made exactly, times and rates finite and positive, one
compiled window step whose memory does not depend on the length."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.flow  # the benchmark's CLI: make test-flows

ROOT = Path(__file__).parents[2]


def test_long_video_benchmark_cli_reports_per_length_rows(tmp_path):
  # Window 4, overlap 2, 3 DDIM steps, one video: the shape tests/test_controls.py
  # compiles too, so the persistent compile cache usually serves it.
  out = tmp_path / "long.json"
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.long_video",
    "--lengths=8,12,16",
    "--window=4",
    "--overlap=2",
    "--num_steps=3",
    "--batch=1",
    f"--json={out}",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("LONG_VIDEO_JSON ")][-1]
  result = json.loads(line[len("LONG_VIDEO_JSON ") :])
  assert json.loads(out.read_text()) == result
  assert "s/window" in proc.stdout and "XLA memory analysis" in proc.stdout
  rows = result["rows"]
  assert [r["frames"] for r in rows] == [8, 12, 16]
  assert [r["windows"] for r in rows] == [3, 5, 7]  # 1 + (L - 4) / 2
  for r in rows:
    for key in ("seconds", "frames_per_s", "s_per_window", "s_per_window_ratio", "rss_peak_bytes"):
      assert np.isfinite(r[key]) and r[key] > 0, (key, r[key])
    assert r["frames_per_s"] == np.float64(r["frames"] / r["seconds"])
    assert r["windows_ratio"] == r["windows"] / 3
  assert rows[0]["s_per_window_ratio"] == 1.0
  mem = result["memory"]
  assert mem["xla_total"] > mem["xla_arguments"] > 0 and mem["xla_temp"] >= 0
  assert mem["carried_bytes"] == 2 * 16 * 16 * 3 * 4  # the 2 known frames
  assert result["params"] > 0 and result["compile_s"] > 0
