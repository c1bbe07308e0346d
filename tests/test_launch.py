"""The launch scripts, in dry-run mode: the commands they would run on a pod or cluster."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

LAUNCH = Path(__file__).resolve().parent.parent / "launch"


def dry_run(script, *args, **env):
  return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True,
                        text=True, env=dict(os.environ, DRY_RUN="1", **env), timeout=60)


def test_tpu_pod_runs_the_train_command_on_every_worker():
  out = dry_run("tpu_pod.sh", "my-v5p-64", "us-east5-a", "configs/webvid.py",
                "gs://bucket/runs/w", "--config.train.batch_size=1024", SETUP="1")
  assert out.returncode == 0, out.stderr
  copy, install, train = [shlex.split(l) for l in out.stdout.strip().splitlines()]
  assert copy[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse",
                      "--zone=us-east5-a", "--worker=all"]
  assert copy[-1] == "my-v5p-64:~/videofusion_jax"
  assert install[-1].endswith("pip install -q -e '.[tpu]'")
  assert train[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v5p-64",
                       "--zone=us-east5-a", "--worker=all"]
  assert train[8] == "--command"
  assert shlex.split(train[9]) == [
      "cd", "~/videofusion_jax", "&&", ".venv/bin/python", "-m", "videofusion_jax.train",
      "--config=configs/webvid.py", "--workdir=gs://bucket/runs/w",
      "--config.train.batch_size=1024"]


def test_slurm_runs_one_task_per_gpu_with_srun():
  out = dry_run("slurm_gpu.sbatch", "configs/webvid.py", "/shared/runs/w", VENV="/opt/venv")
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == [
      "srun", "--kill-on-bad-exit=1", "--gpus-per-task=1", "/opt/venv/bin/python", "-m",
      "videofusion_jax.train", "--config=configs/webvid.py", "--workdir=/shared/runs/w"]


def test_gke_renders_a_jobset_with_every_field_filled():
  out = dry_run("gke.sh", "vf-webvid", "configs/webvid.py", "gs://b/runs/w", "tpu-v5p-slice",
                "4x4x4", "16", IMAGE="us-docker.pkg.dev/p/r/vf:1")
  assert out.returncode == 0, out.stderr
  text = out.stdout
  assert "${" not in text
  for part in ("name: vf-webvid", "parallelism: 16", "completions: 16",
               "gke-tpu-topology: 4x4x4", "image: us-docker.pkg.dev/p/r/vf:1",
               '"--config=configs/webvid.py", "--workdir=gs://b/runs/w"',
               "google.com/tpu: 4"):
    assert part in text


@pytest.mark.parametrize("script", ["tpu_pod.sh", "slurm_gpu.sbatch", "gke.sh"])
def test_missing_arguments_print_usage(script):
  out = dry_run(script, IMAGE="x")
  assert out.returncode == 2 and "usage:" in out.stderr
