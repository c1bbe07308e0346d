"""The real CLIs with `--workdir=gs://...` and a video folder on GCS, against the
fake-gcs-server of conftest.py: every artefact lands in the bucket, nothing under a
local `./gs:` folder, and a bucket or credentials problem is one line before anything
is written.

The runs are subprocesses on the tiny shapes of tests/test_faults.py (the demo model on
4-frame 16x16 clips, batch 2), so they reuse its compiled programs from the persistent
cache; each starts in a fresh empty folder, where a path mistaken for a local one
would show as `gs:/...`.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from etils import epath

from tests.gcs.test_storage import moving_square
from videofusion_jax import cli
from videofusion_jax.data import video_io
from videofusion_jax.metrics.evaluation import EvalSettings, evaluate
from videofusion_jax.metrics.features import FeatureExtractor

pytestmark = pytest.mark.flow  # make test-flows (pyproject.toml: markers)

ROOT = Path(__file__).resolve().parents[2]
TINY = [
  "--config.data.num_frames=4",
  "--config.train.batch_size=2",
  "--config.train.log_every=1",
  "--config.train.checkpoint_every=2",
  "--config.sample.num_steps=2",
  "--config.sample.num_videos=2",
  "--config.sample.batch_size=2",
]
# Bounds a hang only: a run that works finishes far sooner, even on a loaded CI machine.
HANG = 600


def cli_env(extra=None):
  env = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
  }
  return {**env, **(extra or {})}


def command(module, workdir, videos, *overrides):
  return [
    sys.executable,
    "-m",
    f"videofusion_jax.{module}",
    f"--config={ROOT}/configs/folder.py:{videos}",
    *TINY,
    f"--workdir={workdir}",
    *overrides,
  ]


def run_cli(cwd, module, workdir, videos, *overrides, env=None):
  return subprocess.run(
    command(module, workdir, videos, *overrides),
    cwd=cwd,
    env=env or cli_env(),
    capture_output=True,
    text=True,
    timeout=HANG,
  )


def objects(prefix) -> list[str]:
  """Every object under `prefix`, relative to it."""
  from videofusion_jax import storage

  return [str(p)[len(prefix) + 1 :] for p in storage.list_files(prefix)]


def steps_logged(workdir) -> list[int]:
  path = epath.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]


def upload_videos(prefix, frames=6, name="videos", shift=0) -> str:
  """Four short clips of a moving square, in two class folders, as mp4 on GCS."""
  for i in range(4):
    video_io.write_mp4(
      f"{prefix}/{name}/c{i % 2}/v{i}.mp4", moving_square(n=frames, h=16, w=16, shift=i + shift)
    )
  return f"{prefix}/{name}"


def _standin(videos):
  """A fixed map of uint8 (B, 4, 16, 16, 3) clips to 6 features (the real I3D runs in
  the slow test)."""
  x = videos.astype(np.float64).reshape(len(videos), 4, -1).mean(axis=2) / 255
  return np.concatenate([x, x[:, 1:] - x[:, :-1]], axis=1)[:, :6]


def test_train_sample_evaluate_with_the_workdir_and_videos_on_gcs(gs_prefix, tmp_path):
  videos = upload_videos(gs_prefix)
  run = f"{gs_prefix}/run"
  out = run_cli(
    tmp_path, "train", run, videos, "--config.train.num_steps=2", "--config.train.tensorboard=True"
  )
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  assert f"training done in {run}" in out.stdout
  stored = objects(run)
  assert "metrics.jsonl" in stored and steps_logged(run) == [1, 2]
  assert "parameters.txt" in stored
  assert any(p.startswith("checkpoints/2/state/") for p in stored), stored
  assert any(p.startswith("tensorboard/events.out.tfevents") for p in stored), stored

  out = run_cli(tmp_path, "sample", run, videos)
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  assert f"wrote 2 videos (mp4 + gif) and a frame strip to {run}/samples/" in out.stdout
  assert sorted(p for p in objects(run) if p.startswith("samples/")) == [
    "samples/strip.png",
    "samples/video_000.gif",
    "samples/video_000.mp4",
    "samples/video_001.gif",
    "samples/video_001.mp4",
  ]
  assert video_io.read_video(f"{run}/samples/video_000.mp4").shape == (4, 16, 16, 3)

  # Evaluation reads both folders from GCS and writes its cache and JSON there; the
  # network is a stand-in here (the CLI with the real I3D: the slow test below).
  standin = {"i3d": FeatureExtractor("standin", _standin, batch_size=2, num_frames=4)}
  settings = EvalSettings(
    num_videos=2, batch_size=2, num_frames=4, image_size=16, cache_dir=f"{gs_prefix}/cache"
  )
  results = evaluate(videos, f"{run}/samples", settings, extractors=standin)
  assert results["output"] == f"{run}/samples/metrics.json"
  saved = json.loads(epath.Path(results["output"]).read_text())
  assert saved["fake"]["count"] == saved["real"]["count"] == 2
  assert saved["real"]["path"] == videos and np.isfinite(saved["metrics"]["fvd"])
  assert saved["real"]["cache"].startswith(f"{gs_prefix}/cache/real-i3d-")
  assert evaluate(videos, f"{run}/samples", settings, extractors=standin)["real"]["cache_hit"]
  assert not list(tmp_path.iterdir()) and not (ROOT / "gs:").exists()


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--workdir", "--workdir=gs://nobucket/run: bucket nobucket does not exist"),
    ("data", "data.path=gs://nobucket/videos: bucket nobucket does not exist"),
  ],
)
def test_a_missing_bucket_is_one_line_before_anything_is_written(
  gs_prefix, tmp_path, monkeypatch, flag, message
):
  """`train()` itself (it fails before any compile; the CLI prints a ConfigError as its
  one line with exit code 2, as the credentials test below shows)."""
  from configs import folder
  from videofusion_jax.cli import ConfigError
  from videofusion_jax.training.loop import train

  monkeypatch.chdir(tmp_path)
  workdir = "gs://nobucket/run" if flag == "--workdir" else f"{gs_prefix}/run"
  videos = "gs://nobucket/videos" if flag == "data" else upload_videos(gs_prefix)
  config = folder.get_config(videos)
  config.data.num_frames = 4
  with pytest.raises(ConfigError) as error:
    train(config, workdir)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)
  assert not objects(f"{gs_prefix}/run") and not list(tmp_path.iterdir())


def test_no_credentials_is_one_line_naming_the_path(tmp_path):
  """Real GCS, with no emulator and no credentials: google.auth fails before any
  request (the key file named does not exist), and the CLI says so in one line."""
  env = cli_env(
    {
      "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent-key.json"),
      "FSSPEC_GCS_TOKEN": "google_default",
    }
  )
  for name in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL"):
    env.pop(name, None)
  out = run_cli(
    tmp_path,
    "train",
    "gs://some-bucket/run",
    tmp_path / "videos",
    "--config.train.num_steps=2",
    env=env,
  )
  assert out.returncode == cli.BAD_INPUT, out.stderr[-3000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(
    "error: --workdir=gs://some-bucket/run: no Google Cloud "
    "credentials with access to bucket some-bucket "
    "(DefaultCredentialsError: File "
  ), last
  assert "gcloud auth application-default login" in last
  assert "Traceback" not in out.stderr


@pytest.mark.slow  # a SIGTERM'd run, its resume, the real I3D: 11 min on 2 loaded cores
def test_sigterm_resume_and_the_evaluate_cli_on_gcs(gs_prefix, tmp_path):
  videos = upload_videos(gs_prefix, frames=16)  # I3D's clip length, for the evaluation
  run = f"{gs_prefix}/run"
  proc = subprocess.Popen(
    command(
      "train", run, videos, "--config.train.num_steps=1000", "--config.train.checkpoint_every=1000"
    ),
    cwd=tmp_path,
    env=cli_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.monotonic() + HANG
  while len(steps_logged(run)) < 2:
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.monotonic() < deadline, "timed out waiting for two logged steps"
    time.sleep(0.2)  # poll interval
  proc.send_signal(signal.SIGTERM)
  stdout, stderr = proc.communicate(timeout=HANG)
  assert proc.returncode == cli.PREEMPTED, stderr[-3000:]
  stopped = int(stdout.split("stopped at step ")[1].split()[0])
  assert stopped >= 2 and steps_logged(run)[-1] == stopped

  out = run_cli(tmp_path, "train", run, videos, f"--config.train.num_steps={stopped + 2}")
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  assert f"Resumed from {run}/checkpoints at step {stopped}" in out.stderr
  assert steps_logged(run) == list(range(1, stopped + 3))

  # The real I3D needs 16-frame clips, which the tiny model does not make: a second
  # folder of 16-frame videos on GCS stands for the generated ones.
  fake = upload_videos(gs_prefix, frames=16, name="fake", shift=1)
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.evaluate",
      f"--real={videos}",
      f"--fake={fake}",
      "--num_videos=4",
      "--batch_size=4",
      "--image_size=16",
      f"--cache_dir={gs_prefix}/cache",
    ],
    cwd=tmp_path,
    env=cli_env(),
    capture_output=True,
    text=True,
    timeout=HANG,
  )
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  assert f"wrote {fake}/metrics.json" in out.stdout
  assert any(p.startswith("cache/real-i3d-") for p in objects(gs_prefix))
  saved = json.loads(epath.Path(f"{fake}/metrics.json").read_text())
  assert saved["protocol"]["extractors"]["i3d"]["name"] == "i3d-kinetics-400-logits"
  assert not list(tmp_path.iterdir()) and not (ROOT / "gs:").exists()
