"""The launch scripts, in dry-run mode: the commands they would run on a pod or cluster."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from videofusion_jax import cli

LAUNCH = Path(__file__).resolve().parent.parent / "launch"


def dry_run(script, *args, **env):
  return subprocess.run(
    ["bash", str(LAUNCH / script), *args],
    capture_output=True,
    text=True,
    env=dict(os.environ, DRY_RUN="1", **env),
    timeout=60,
  )


SSH = ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]


def remote(command: list[str]) -> list[str]:
  """The shell words a `gcloud ... ssh --command CMD` line runs on the workers."""
  assert command[-2] == "--command", command
  return shlex.split(command[-1])


def train_words(config, workdir, *flags):
  return [
    "launch/until_done.sh",
    ".venv/bin/python",
    "-m",
    "videofusion_jax.train",
    f"--config={config}",
    f"--workdir={workdir}",
    *flags,
  ]


def test_tpu_pod_runs_the_train_command_on_every_worker():
  out = dry_run(
    "tpu_pod.sh",
    "my-v5p-64",
    "us-east5-a",
    "configs/webvid.py",
    "gs://bucket/runs/w",
    "--config.train.batch_size=1024",
    SETUP="1",
  )
  assert out.returncode == 0, out.stderr
  copy, install, train = [shlex.split(l) for l in out.stdout.strip().splitlines()]
  assert copy[:8] == [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "scp",
    "--recurse",
    "--zone=us-east5-a",
    "--worker=all",
  ]
  # A folder named videofusion_jax copied into ~: a second SETUP updates it in place.
  assert copy[-2].endswith("/videofusion_jax") and copy[-1] == "my-v5p-64:~"
  assert install == SSH + [
    "my-v5p-64",
    "--zone=us-east5-a",
    "--worker=all",
    "--command",
    "cd ~/videofusion_jax && launch/tpu_vm_setup.sh",
  ]
  assert train[:8] == SSH + ["my-v5p-64", "--zone=us-east5-a", "--worker=all"]
  assert remote(train) == [
    "cd",
    "~/videofusion_jax",
    "&&",
    *train_words("configs/webvid.py", "gs://bucket/runs/w", "--config.train.batch_size=1024"),
  ]


def fake_pythons(tmp_path, **versions) -> dict:
  """A PATH holding only stand-ins for the image's interpreters: `python3=\"3.10\"`
  makes a `python3` that reports 3.10, as the Ubuntu 22.04 TPU VM images' does."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name, version in versions.items():
    exe = bin_dir / name.replace("_", ".")
    exe.write_text(f"#!/bin/sh\necho {version}\n")
    exe.chmod(0o755)
  return dict(PATH=str(bin_dir), HOME=str(tmp_path / "home"))


def setup_commands(tmp_path, **versions):
  out = subprocess.run(
    ["/bin/bash", str(LAUNCH / "tpu_vm_setup.sh")],
    capture_output=True,
    text=True,
    timeout=60,
    env=dict(fake_pythons(tmp_path, **versions), DRY_RUN="1"),
  )
  assert out.returncode == 0, out.stderr
  return [shlex.split(l) for l in out.stdout.strip().splitlines()], out.stderr


@pytest.mark.parametrize(
  "versions, python",
  [
    ({"python3": "3.10", "python3_11": "3.11"}, "python3.11"),  # the image's 3.11
    ({"python3": "3.12"}, "python3"),  # an Ubuntu 24.04 image
  ],
)
def test_tpu_vm_setup_uses_a_python_of_311_or_312_when_the_image_has_one(
  tmp_path, versions, python
):
  commands, said = setup_commands(tmp_path, **versions)
  assert commands[0] == [python, "-m", "venv", "--clear", ".venv"]
  assert_checks_and_installs(commands[1:])
  assert f"using {tmp_path}/bin/{python} (Python {versions[python.replace('.', '_')]})" in said


@pytest.mark.parametrize(
  "versions", [{"python3": "3.10"}, {"python3": "3.10", "python3_12": "3.13"}]
)
def test_tpu_vm_setup_installs_uv_and_its_python_311_on_a_310_image(tmp_path, versions):
  commands, said = setup_commands(tmp_path, **versions)
  uv = str(tmp_path / "home" / ".local" / "bin" / "uv")
  assert commands[:3] == [
    ["python3", "-m", "pip", "install", "--user", "--quiet", "--upgrade", "uv"],
    [uv, "python", "install", "3.11"],
    [uv, "venv", "--clear", "--seed", "--python", "3.11", ".venv"],
  ]
  assert_checks_and_installs(commands[3:])
  assert "no Python 3.11 or 3.12 (python3 is 3.10)" in said


def assert_checks_and_installs(commands):
  check, upgrade_pip, install, imports = commands
  assert check[:2] == [".venv/bin/python", "-c"]
  assert upgrade_pip == [".venv/bin/python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"]
  assert install == [".venv/bin/python", "-m", "pip", "install", "--quiet", "-e", ".[tpu]"]
  assert imports[:2] == [".venv/bin/python", "-c"] and "import jax" in imports[2]
  # The version check itself, run by this Python (3.11 or 3.12): passes and says so.
  ran = subprocess.run([sys.executable, "-c", check[2]], capture_output=True, text=True)
  assert ran.returncode == 0 and ran.stdout.startswith("tpu_vm_setup: Python 3.1"), ran
  # ...and stops a 3.10 (what the check sees, given a 3.10 version_info).
  as_310 = check[2].replace("sys.version_info[:2]", "(3, 10)")
  assert subprocess.run([sys.executable, "-c", as_310], capture_output=True).returncode == 1


def test_tpu_pod_creates_the_bucket_and_slice_follows_the_log_and_deletes():
  w = ("vf", "us-east5-b", "configs/webvid.py", "gs://my-b/runs/w")
  out = dry_run("tpu_pod.sh", *w, MAKE_BUCKET="1", CREATE="v5litepod-16", SPOT="1", DETACH="1")
  assert out.returncode == 0, out.stderr
  bucket, create, train = [shlex.split(l) for l in out.stdout.strip().splitlines()]
  assert bucket == [
    "gcloud",
    "storage",
    "buckets",
    "create",
    "gs://my-b",
    "--location=us-east5",
    "--uniform-bucket-level-access",
  ]
  assert create == [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "create",
    "vf",
    "--zone=us-east5-b",
    "--accelerator-type=v5litepod-16",
    "--version=v2-alpha-tpuv5-lite",
    "--spot",
  ]
  assert remote(train) == [
    "cd",
    "~/videofusion_jax",
    "&&",
    "nohup",
    *train_words("configs/webvid.py", "gs://my-b/runs/w"),
    ">",
    "train.log",
    "2>&1",
    "<",
    "/dev/null",
    "&",
  ]
  for accelerator, runtime in [
    ("v6e-16", "v2-alpha-tpuv6e"),
    ("v5p-64", "v2-alpha-tpuv5"),
    ("v4-32", "tpu-ubuntu2204-base"),
  ]:
    first = dry_run("tpu_pod.sh", *w, CREATE=accelerator).stdout.splitlines()[0]
    assert shlex.split(first)[-1] == f"--version={runtime}"
  logs = dry_run("tpu_pod.sh", "vf", "us-east5-b", LOGS="1")
  assert shlex.split(logs.stdout) == SSH + [
    "vf",
    "--zone=us-east5-b",
    "--worker=0",
    "--command",
    "tail -n 100 -F ~/videofusion_jax/train.log",
  ]
  delete = dry_run("tpu_pod.sh", "vf", "us-east5-b", DELETE="1")
  assert shlex.split(delete.stdout) == [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "delete",
    "vf",
    "--zone=us-east5-b",
    "--quiet",
  ]


@pytest.mark.parametrize(
  "args, env, message",
  [
    (
      ("vf", "z-a", "c.py", "gs://b/w"),
      {"CREATE": "tpu9-8"},
      "error: CREATE=tpu9-8: unknown accelerator type",
    ),
    (
      ("vf", "z-a", "c.py", "/local/w"),
      {"MAKE_BUCKET": "1"},
      "error: MAKE_BUCKET=1 needs a gs:// WORKDIR, not /local/w",
    ),
    (("vf",), {"LOGS": "1"}, "usage: LOGS=1|DELETE=1"),
  ],
)
def test_tpu_pod_refuses_bad_input_before_any_command(args, env, message):
  out = dry_run("tpu_pod.sh", *args, **env)
  assert out.returncode == 2 and out.stdout == "" and message in out.stderr


def walkthrough_lines() -> list[str]:
  """The command lines of launch/README.md's "First run on a v5e/v6e pod" block."""
  text = (LAUNCH / "README.md").read_text()
  section = text[text.index("## First run on a v5e/v6e pod") :]
  start = section.index("```bash\n") + len("```bash\n")
  block = section[start : section.index("\n```", start)]
  return [l for l in block.splitlines() if l.strip() and not l.startswith("#")]


def test_first_run_walkthrough_runs_exactly_the_commands_tested_here():
  """Each line of the walkthrough, run as written under DRY_RUN=1: every gcloud command
  it would run is the one asserted below, in order."""
  ran = []
  for line in walkthrough_lines():
    words = shlex.split(line)
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith(("-", "gs:")))
    script_at = next(i for i, w in enumerate(words) if w.startswith("launch/"))
    assert words[:script_at] == [f"{k}={v}" for k, v in env.items()], line
    out = dry_run(words[script_at].removeprefix("launch/"), *words[script_at + 1 :], **env)
    assert out.returncode == 0, (line, out.stderr)
    ran += [shlex.split(l) for l in out.stdout.strip().splitlines()]
  tpu, zone, workdir = "vf-pod", "--zone=us-east5-b", "gs://my-vf-bucket/runs/webvid"
  create = [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "create",
    tpu,
    zone,
    "--accelerator-type=v6e-16",
    "--version=v2-alpha-tpuv6e",
    "--spot",
  ]
  setup = SSH + [
    tpu,
    zone,
    "--worker=all",
    "--command",
    "cd ~/videofusion_jax && launch/tpu_vm_setup.sh",
  ]
  train = [
    "cd",
    "~/videofusion_jax",
    "&&",
    "nohup",
    *train_words("configs/webvid.py", workdir),
    ">",
    "train.log",
    "2>&1",
    "<",
    "/dev/null",
    "&",
  ]
  delete = ["gcloud", "compute", "tpus", "tpu-vm", "delete", tpu, zone, "--quiet"]
  copy_prefix = ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", zone, "--worker=all"]

  def first_run(commands):  # create, copy, install, train in the background
    assert commands[0] == create and commands[2] == setup
    assert commands[1][:8] == copy_prefix and commands[1][-1] == f"{tpu}:~"
    assert commands[3][:8] == SSH + [tpu, zone, "--worker=all"]
    assert remote(commands[3]) == train

  assert ran[0] == [
    "gcloud",
    "storage",
    "buckets",
    "create",
    "gs://my-vf-bucket",
    "--location=us-east5",
    "--uniform-bucket-level-access",
  ]
  first_run(ran[1:5])
  assert ran[5] == SSH + [
    tpu,
    zone,
    "--worker=0",
    "--command",
    "tail -n 100 -F ~/videofusion_jax/train.log",
  ]
  assert ran[6] == delete
  first_run(ran[7:11])  # after a preemption: the same run, which resumes
  assert ran[11:] == [delete]


def test_slurm_runs_one_task_per_gpu_with_srun():
  out = dry_run("slurm_gpu.sbatch", "configs/webvid.py", "/nfs/runs/w", VENV="/opt/venv")
  assert out.returncode == 0, out.stderr
  srun, requeue = out.stdout.strip().splitlines()
  assert srun.split() == [
    "srun",
    "--kill-on-bad-exit=1",
    "--gpus-per-task=1",
    "/opt/venv/bin/python",
    "-m",
    "videofusion_jax.train",
    "--config=configs/webvid.py",
    "--workdir=/nfs/runs/w",
  ]
  assert requeue == f"on exit {cli.PREEMPTED}: scontrol requeue $SLURM_JOB_ID"
  header = (LAUNCH / "slurm_gpu.sbatch").read_text()
  assert "#SBATCH --requeue\n" in header and "#SBATCH --signal=TERM@300\n" in header


def test_gke_renders_a_jobset_with_every_field_filled():
  out = dry_run(
    "gke.sh",
    "vf-webvid",
    "configs/webvid.py",
    "gs://b/runs/w",
    "tpu-v5p-slice",
    "4x4x4",
    "16",
    IMAGE="us-docker.pkg.dev/p/r/vf:1",
  )
  assert out.returncode == 0, out.stderr
  text = out.stdout
  assert "${" not in text
  for part in (
    "name: vf-webvid",
    "parallelism: 16",
    "completions: 16",
    "gke-tpu-topology: 4x4x4",
    "image: us-docker.pkg.dev/p/r/vf:1",
    '"--config=configs/webvid.py", "--workdir=gs://b/runs/w"',
    "google.com/tpu: 4",
  ):
    assert part in text
  # Restart on "preempted, saved" only: any other failure fails the JobSet at once.
  policy = text[
    text.index("podFailurePolicy:") : text.index("template:", text.index("podFailurePolicy:"))
  ]
  policy = "\n".join(line.split("#")[0] for line in policy.splitlines())
  assert shlex.split(" ".join(policy.split())) == [
    "podFailurePolicy:",
    "rules:",
    "-",
    "action:",
    "Count",
    "onPodConditions:",
    "-",
    "type:",
    "DisruptionTarget",
    "status:",
    "True",
    "-",
    "action:",
    "FailJob",
    "onExitCodes:",
    "containerName:",
    "train",
    "operator:",
    "NotIn",
    "values:",
    f"[{cli.PREEMPTED}]",
  ]
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
  fake.write_text(
    'echo run >> "$RUNS"; code=$(head -n1 "$CODES"); sed -i 1d "$CODES"; exit "$code"\n'
  )

  def until_done(*exit_codes, **env):
    codes.write_text("".join(f"{c}\n" for c in exit_codes))
    runs.write_text("")
    out = subprocess.run(
      ["bash", str(LAUNCH / "until_done.sh"), "bash", str(fake)],
      capture_output=True,
      text=True,
      timeout=60,
      env=dict(os.environ, CODES=str(codes), RUNS=str(runs), **env),
    )
    return out.returncode, len(runs.read_text().splitlines()), out.stderr

  p = cli.PREEMPTED
  assert until_done(p, p, cli.DONE)[:2] == (cli.DONE, 3)
  assert until_done(p, cli.DIVERGED, cli.DONE)[:2] == (cli.DIVERGED, 2)
  assert until_done(cli.BAD_INPUT, cli.DONE)[:2] == (cli.BAD_INPUT, 1)
  assert until_done(cli.STOPPED, cli.DONE)[:2] == (cli.STOPPED, 1)  # Ctrl-C: a person
  code, count, stderr = until_done(p, p, p, p, MAX_RESTARTS="2")
  assert (code, count) == (p, 3) and "MAX_RESTARTS=2 reached" in stderr
