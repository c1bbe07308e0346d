"""The launch scripts, in dry-run mode: the commands they would run on a pod or cluster."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from videofusion_jax import cli

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
      "cd", "~/videofusion_jax", "&&", "launch/until_done.sh", ".venv/bin/python", "-m",
      "videofusion_jax.train",
      "--config=configs/webvid.py", "--workdir=gs://bucket/runs/w",
      "--config.train.batch_size=1024"]


def test_slurm_runs_one_task_per_gpu_with_srun():
  out = dry_run("slurm_gpu.sbatch", "configs/webvid.py", "/shared/runs/w", VENV="/opt/venv")
  assert out.returncode == 0, out.stderr
  srun, requeue = out.stdout.strip().splitlines()
  assert srun.split() == [
      "srun", "--kill-on-bad-exit=1", "--gpus-per-task=1", "/opt/venv/bin/python", "-m",
      "videofusion_jax.train", "--config=configs/webvid.py", "--workdir=/shared/runs/w"]
  assert requeue == f"on exit {cli.PREEMPTED}: scontrol requeue $SLURM_JOB_ID"
  header = (LAUNCH / "slurm_gpu.sbatch").read_text()
  assert "#SBATCH --requeue\n" in header and "#SBATCH --signal=TERM@300\n" in header


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
  # Restart on "preempted, saved" only: any other failure fails the JobSet at once.
  policy = text[text.index("podFailurePolicy:"):text.index("template:", text.index(
      "podFailurePolicy:"))]
  policy = "\n".join(line.split("#")[0] for line in policy.splitlines())
  assert shlex.split(" ".join(policy.split())) == [
      "podFailurePolicy:", "rules:", "-", "action:", "Count", "onPodConditions:", "-",
      "type:", "DisruptionTarget", "status:", "True", "-", "action:", "FailJob", "onExitCodes:",
      "containerName:", "train", "operator:", "NotIn", "values:", f"[{cli.PREEMPTED}]"]
  assert "- action: FailJobSet\n      onJobFailureReasons: [PodFailurePolicy]" in text


@pytest.mark.parametrize("script", ["tpu_pod.sh", "slurm_gpu.sbatch", "gke.sh"])
def test_missing_arguments_print_usage(script):
  out = dry_run(script, IMAGE="x")
  assert out.returncode == 2 and "usage:" in out.stderr


def test_until_done_restarts_a_preempted_run_and_stops_on_anything_else(tmp_path):
  """A stand-in train command that exits with the codes listed in a file, one per run."""
  codes = tmp_path / "codes"
  runs = tmp_path / "runs"
  fake = tmp_path / "fake_train.sh"
  fake.write_text('echo run >> "$RUNS"; code=$(head -n1 "$CODES"); '
                  'sed -i 1d "$CODES"; exit "$code"\n')

  def until_done(*exit_codes, **env):
    codes.write_text("".join(f"{c}\n" for c in exit_codes))
    runs.write_text("")
    out = subprocess.run(["bash", str(LAUNCH / "until_done.sh"), "bash", str(fake)],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, CODES=str(codes), RUNS=str(runs), **env))
    return out.returncode, len(runs.read_text().splitlines()), out.stderr

  p = cli.PREEMPTED
  assert until_done(p, p, cli.DONE)[:2] == (cli.DONE, 3)
  assert until_done(p, cli.DIVERGED, cli.DONE)[:2] == (cli.DIVERGED, 2)
  assert until_done(cli.BAD_INPUT, cli.DONE)[:2] == (cli.BAD_INPUT, 1)
  assert until_done(cli.STOPPED, cli.DONE)[:2] == (cli.STOPPED, 1)  # Ctrl-C: a person
  code, count, stderr = until_done(p, p, p, p, MAX_RESTARTS="2")
  assert (code, count) == (p, 3) and "MAX_RESTARTS=2 reached" in stderr
