"""A lent GPU session's measurements as one prepared command. (A driver, not a benchmark.)

A device lease is short (15 minutes of an H200 per session, 10 per call) and starts bare,
so everything it runs is prepared and rehearsed here first:

  make device-wheels                        # here: the packages the GPU image lacks, as
                                            # cp312 wheels in .device_wheels/ (~42 MB)
  python scripts/device_session.py --rehearse --out=/tmp/rehearsal   # here, tiny sizes
  python scripts/device_session.py --dry_run --steps=setup,mfu,table4  # what it would run

then, on the device (`run` with carry [".device_wheels"], from the repository root):

  python3 scripts/device_session.py --budget_s=560      # every step, in one call

The first lease (2026-12-04, benchmarks/RESULTS.md) measured Table 4 and the demo but not
the MFU: the UCF101 train step's compile outlasted its 420 s. For the MFU, split it:

  python3 scripts/device_session.py --steps=setup,precompile --caps=precompile=540
  python3 scripts/device_session.py --steps=setup,mfu,table4   # next call, still warm

Steps (each one or more subprocesses, output teed to OUT/session.log):
  setup       installs .device_wheels/ into a private site folder (the image's own jax,
              CUDA and the rest stay), prints the versions, devices and nvidia-smi, and
              imports the train and sample entry points, so an incompatibility fails here;
  precompile  starts the benchmarks with --compile_only in the background (the train
              step's two variants in processes of their own; output in
              OUT/precompile.log): the big models' XLA compiles (minutes) fill the
              persistent compile cache while the demo trains, and the timed runs below
              load them. They wait for it first, so nothing else runs while they time;
  demo        `make demo`'s GPU setting (configs/demo.py:gpu), its training cut at its
              share of the budget if need be, then 8 videos sampled from the last
              checkpoint (issue 12);
  mfu         benchmarks.train_throughput, UCF101 (Table 8) model at 16x64x64, bf16, with
              XLA and cuDNN attention, and with remat, each step's profile by layer and
              op kind (issue 4);
  table4      benchmarks.table4 --preset=table8 in bf16: latency, memory, FLOPs ratios
              (VideoFusion as ours and with the paper's 2D residual, each over VDM*), the
              50-step sampler's host overhead, and each step's profile (issue 9).
The decomposition and pretraining studies (`make study`, hours of training) do not fit a
lease and are not a step.

Every `TAG_JSON {...}` line a step prints, its return code and wall time go to
OUT/summary.json, rewritten after each step, so a call cut short still returns what it
measured. OUT holds at most 8 files (what the device returns): summary.json, session.log,
precompile.log, the two benchmark JSONs, the demo's strip.png, first gif and metrics.jsonl.
The work folder (.device_work/: site packages, compile cache, demo workdir) is ignored by
git, so a second call on a still-warm machine reuses it instead of starting over. This
file imports only the standard library: it must start where nothing else is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".device_wheels"
WORK = REPO / ".device_work"
STEPS = ("setup", "precompile", "demo", "mfu", "table4")
BACKGROUND = ("precompile",)  # started, not waited for, by the session
TIMED = ("mfu", "table4")  # wait for the background first: they own the GPU while timing
H200_BF16_PEAK_TFLOPS = 989  # dense, per chip (as train_throughput.py lists)
# train_throughput's variants, each compiled in a process of its own by `precompile`:
# cuDNN's flash attention before remat, because at 32x32 tokens XLA's attention writes
# the logits of every head to memory, which is likely where the MFU goes.
MFU_VARIANTS = ("no_remat", "cudnn", "remat")

# What the GPU image (Python 3.12, its own jax/jaxlib with CUDA) lacks or holds in another
# version than ours; their own dependencies are all in the image (KINDS.md's list).
DEVICE_PACKAGES = (
  "flax",
  "optax",
  "orbax-checkpoint",
  "grain",
  "array-record",
  "ml-collections",
  "portpicker",
  "av",
  "tensorboardX",
)
# Versions other than this venv's, because the image's jax is 0.11.x: flax 0.12.8 fails to
# import there (jax.experimental.hijax has no HiPrimitive); 0.12.12 requires jax >= 0.11.1
# and runs every step (rehearsed on CPU with jax 0.11.2).
DEVICE_VERSIONS = {"flax": "0.12.12"}
DEVICE_PLATFORMS = (
  "manylinux_2_28_x86_64",
  "manylinux_2_27_x86_64",
  "manylinux_2_24_x86_64",
  "manylinux_2_17_x86_64",
  "manylinux2014_x86_64",
  "manylinux1_x86_64",
)

# Seconds each step may take at most (less when the budget has less left).
STEP_CAPS = {"setup": 150, "precompile": 420, "demo": 270, "mfu": 200, "table4": 300}
SAMPLE_RESERVE_S = 90  # of the demo step: sampling after the training's deadline
MIN_STEP_S = 30  # a step with less left is skipped, not started

_JSON_LINE = re.compile(r"^([A-Z0-9_]+)_JSON (\{.*\})\s*$")
_SAMPLED_STEP = re.compile(r"Sampling with the \w+ parameters of step (\d+)")
_SAMPLE_LINE = re.compile(
  r"frame-to-frame change ([\d.]+)/255, brightness flicker ([\d.]+)/255"
  r"(?:, frames to centre ([\d.]+)/255)?"
)
_MOTION_LINE = re.compile(
  r"\b(samples|data): +objects move ([\d.]+|nan) px/frame along a path "
  r"of ([\d.]+|nan) \(straightness ([\d.]+|nan)\)"
)


def wheel_download_command(dest: Path, python: str = sys.executable) -> list[str]:
  """pip's command for the device's wheels, at the versions installed here (what the test
  suite ran with), for CPython 3.12 on x86-64 Linux."""
  pins = [
    f"{name}=={DEVICE_VERSIONS.get(name) or importlib.metadata.version(name)}"
    for name in DEVICE_PACKAGES
  ]
  platforms = [arg for p in DEVICE_PLATFORMS for arg in ("--platform", p)]
  return [
    python,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    *platforms,
    "-d",
    str(dest),
    *pins,
  ]


def install_command(wheels: list[Path], site: Path, python: str) -> list[str]:
  return [
    python,
    "-m",
    "pip",
    "install",
    "-q",
    "--no-index",
    "--no-deps",
    "--no-compile",
    "--no-cache-dir",
    "--upgrade",
    "--target",
    str(site),
    *map(str, wheels),
  ]


_CHECK = """
import importlib.metadata as m, jax
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "ml-collections",
             "av", "numpy"):
  try:
    print(f"{name} {m.version(name)}")
  except m.PackageNotFoundError:
    print(f"{name} MISSING")
print("backend", jax.default_backend(), "devices", jax.devices())
# The libraries under the train and sample CLIs (the CLIs themselves each define --config,
# so importing both in one process is a DuplicateFlagError, not a missing package).
import videofusion_jax.training.loop, videofusion_jax.sampling.generate
print("videofusion_jax imports: ok")
"""


def step_commands(
  step: str,
  *,
  python: str,
  out: Path,
  work: Path,
  rehearse: bool,
  wheels: list[Path],
  site: Path,
  table4_batch: int = 4,
) -> list[list[str]]:
  """The subprocesses of one step; `rehearse` swaps in sizes a 2-core CPU runs in minutes."""
  if step == "setup":
    install = [install_command(wheels, site, python)] if wheels and not rehearse else []
    smi = [] if rehearse or not shutil.which("nvidia-smi") else [["nvidia-smi"]]
    return install + smi + [[python, "-c", _CHECK]]
  if step == "precompile":
    timed = [
      cmd
      for s in TIMED
      for cmd in step_commands(
        s,
        python=python,
        out=out,
        work=work,
        rehearse=rehearse,
        wheels=wheels,
        site=site,
        table4_batch=table4_batch,
      )
    ]
    # The train step's variants compile in processes of their own, side by side: one
    # after the other did not finish in 420 s on an H200 machine (RESULTS.md).
    compiles = []
    for cmd in timed:
      cmd = [a for a in cmd if not a.startswith(("--json=", "--variants="))]
      cmd.append("--compile_only")
      if "benchmarks.train_throughput" in cmd:
        compiles += [cmd + [f"--variants={v}"] for v in MFU_VARIANTS]
      else:
        compiles.append(cmd)
    return compiles
  if step == "mfu":
    sizes = (
      ["--config=configs/demo.py", "--batch=2", "--steps=1", "--rounds=1"]
      if rehearse
      else [
        "--config=configs/ucf101.py",
        "--config.data.image_size=64",
        "--config.model.dtype=bfloat16",
        "--batch=32",
        f"--peak_tflops={H200_BF16_PEAK_TFLOPS}",
      ]
    )
    return [
      [
        python,
        "-m",
        "benchmarks.train_throughput",
        *sizes,
        f"--variants={','.join(MFU_VARIANTS)}",
        f"--json={out / 'train_throughput.json'}",
      ]
    ]
  if step == "table4":
    sizes = (
      [
        "--preset=micro",
        "--batch=1",
        "--frames=4",
        "--image_size=16",
        "--sampler_steps=2",
        "--sampler_calls=1",
      ]
      if rehearse
      else ["--preset=table8", f"--batch={table4_batch}", "--dtype=bfloat16"]
    )
    return [[python, "-m", "benchmarks.table4", *sizes, f"--json={out / 'table4.json'}"]]
  if step == "demo":
    config = "configs/demo.py" if rehearse else "configs/demo.py:gpu"
    # Checkpoints often: the training is cut at the budget and the last one is sampled.
    train_sizes = (
      ["--config.train.num_steps=2", "--config.train.checkpoint_every=1"]
      if rehearse
      else ["--config.train.checkpoint_every=500"]
    )
    sample_sizes = (
      ["--config.sample.num_videos=1", "--config.sample.num_steps=2"]
      if rehearse
      else ["--config.sample.num_videos=8"]
    )
    common = [f"--config={config}", f"--workdir={work / 'demo'}"]
    return [
      [python, "-m", "videofusion_jax.train", *common, *train_sizes],
      [python, "-m", "videofusion_jax.sample", *common, *sample_sizes],
    ]
  raise ValueError(f"unknown step {step!r}; expected some of {STEPS}")


def parse_results(lines: list[str]) -> dict:
  """`TAG_JSON {...}` lines as {TAG: dict}, and the sample CLI's smoothness numbers."""
  results = {}
  for line in lines:
    if m := _JSON_LINE.match(line):
      try:
        results[m.group(1)] = json.loads(m.group(2))
      except json.JSONDecodeError:
        results[m.group(1)] = {"unparsed": m.group(2)[:500]}
    elif m := _SAMPLE_LINE.search(line):
      results.setdefault("SAMPLES", {}).update(
        frame_change=float(m.group(1)), brightness_flicker=float(m.group(2))
      )
      if m.group(3):
        results["SAMPLES"]["centre_distance"] = float(m.group(3))
    elif m := _MOTION_LINE.search(line):
      keys = ("speed", "path_speed", "straightness")
      results.setdefault("SAMPLES", {})[f"{m.group(1)}_motion"] = {
        k: float(v) for k, v in zip(keys, m.groups()[1:])
      }
    elif m := _SAMPLED_STEP.search(line):
      results.setdefault("SAMPLES", {})["checkpoint_step"] = int(m.group(1))
  return results


def run_logged(cmd: list[str], *, timeout_s: float, env: dict, log) -> tuple[int, list[str]]:
  """Run `cmd` in its own process group, teeing its output; kill the group at the deadline
  (rc 124, like `timeout`) so no child outlives the step."""
  log.write(f"$ {' '.join(cmd)}\n")
  log.flush()
  proc = subprocess.Popen(
    cmd,
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    bufsize=1,
    start_new_session=True,
  )
  deadline = time.monotonic() + timeout_s
  lines: list[str] = []
  timed_out = False

  def on_alarm(*_):
    nonlocal timed_out
    timed_out = True
    _signal_group(proc)  # the reading loop below ends when its pipe closes

  signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.01))
  try:
    for line in proc.stdout:
      lines.append(line.rstrip("\n"))
      sys.stdout.write(line)
      log.write(line)
    proc.wait()
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
  if timed_out:
    log.write(f"[killed after {timeout_s:.0f} s]\n")
    return 124, lines
  return proc.returncode, lines


def write_summary(out: Path, summary: dict) -> None:
  tmp = out / "summary.json.tmp"
  tmp.write_text(json.dumps(summary, indent=2) + "\n")
  tmp.replace(out / "summary.json")  # a call cut short never leaves half a file


class Background:
  """Commands started now and joined later, each in its own process group, output to one
  log file; killed with their children at their deadline (rc 124) or when the session
  ends."""

  def __init__(self, cmds: list[list[str]], *, timeout_s: float, env: dict, log_path: Path):
    self.deadline = time.monotonic() + timeout_s
    self.start = time.monotonic()
    self.log = open(log_path, "a")
    self.procs = []
    for cmd in cmds:
      self.log.write(f"$ {' '.join(cmd)}\n")
      self.log.flush()
      self.procs.append(
        (
          cmd,
          subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
          ),
        )
      )

  def join(self) -> list[dict]:
    """Wait for every command until the deadline; their records, as a step's."""
    records = []
    for cmd, proc in self.procs:
      try:
        rc = proc.wait(timeout=max(self.deadline - time.monotonic(), 0.01))
      except subprocess.TimeoutExpired:
        _kill_group(proc)
        rc = 124
      records.append({"cmd": cmd[1:], "rc": rc, "wall_s": round(time.monotonic() - self.start, 1)})
    self.log.close()
    return records

  def kill(self) -> None:
    for _, proc in self.procs:
      _kill_group(proc)


def _signal_group(proc: subprocess.Popen) -> None:
  """SIGKILL to the process group `proc` leads (it was started in a session of its own)."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:  # it ended just now
    pass


def _kill_group(proc: subprocess.Popen) -> None:
  _signal_group(proc)
  proc.wait()


def parse_caps(text: str) -> dict[str, float]:
  """`precompile=560,mfu=120` -> {step: seconds}, over STEP_CAPS."""
  caps = dict(STEP_CAPS)
  for item in filter(None, text.split(",")):
    step, _, seconds = item.partition("=")
    if step not in STEP_CAPS:
      raise ValueError(f"--caps: unknown step {step!r}; expected some of {list(STEPS)}")
    try:
      caps[step] = float(seconds)
    except ValueError:
      raise ValueError(f"--caps: {item!r} is not STEP=SECONDS") from None
  return caps


def run_session(
  steps: list[str],
  *,
  out: Path,
  budget_s: float,
  rehearse: bool = False,
  python: str = sys.executable,
  work: Path = WORK,
  caps: dict[str, float] | None = None,
  table4_batch: int = 4,
) -> dict:
  """Run `steps` in order within `budget_s`; return (and keep writing) the summary."""
  caps = caps or STEP_CAPS
  out.mkdir(parents=True, exist_ok=True)
  work.mkdir(parents=True, exist_ok=True)
  site = work / "site"
  wheels = sorted(WHEELS.glob("*.whl"))
  # One compile cache for all steps: the timed benchmarks, table4's memory children and the
  # demo's sampler load what was compiled before instead of compiling on the clock. Several
  # JAX processes share the GPU at once, so none may take 75% of its memory up front.
  env = dict(
    os.environ,
    PYTHONUNBUFFERED="1",
    XLA_PYTHON_CLIENT_PREALLOCATE="false",
    PYTHONPATH=os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]),
  )
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(work / "jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  start = time.monotonic()
  summary = {
    "steps": {},
    "rehearse": rehearse,
    "budget_s": budget_s,
    "wheels": [w.name for w in wheels],
  }
  background: dict[str, Background] = {}

  def join_background():
    for name, job in background.items():
      records = job.join()
      summary["steps"][name].update(
        commands=records,
        ok=all(c["rc"] == 0 for c in records),
        joined_after_s=round(time.monotonic() - start, 1),
      )
    background.clear()
    write_summary(out, summary)

  try:
    with open(out / "session.log", "a") as log:
      for step in steps:
        if step in TIMED:
          join_background()
        left = budget_s - (time.monotonic() - start)
        if left < MIN_STEP_S:
          summary["steps"][step] = {"skipped": f"{left:.0f} s of the budget left"}
          write_summary(out, summary)
          continue
        cap = min(caps[step], left)
        cmds = step_commands(
          step,
          python=python,
          out=out,
          work=work,
          rehearse=rehearse,
          wheels=wheels,
          site=site,
          table4_batch=table4_batch,
        )
        if step in BACKGROUND:
          background[step] = Background(cmds, timeout_s=cap, env=env, log_path=out / f"{step}.log")
          summary["steps"][step] = {"started_after_s": round(time.monotonic() - start, 1)}
          write_summary(out, summary)
          continue
        record = run_step(step, cmds, cap=cap, env=env, log=log)
        if step == "demo":
          _collect_demo_files(work / "demo", out)
        summary["steps"][step] = record
        write_summary(out, summary)
        if step == "setup" and not record["ok"]:
          message = (
            "setup failed: the packages or imports above are what the device "
            "lacks; `make device-wheels` here, then carry .device_wheels\n"
          )
          sys.stdout.write(message)
          log.write(message)
          break
    join_background()
  finally:
    if background:  # an exception left them running: they must not outlive the session
      for job in background.values():
        job.kill()
      join_background()
  return summary


def run_step(step: str, cmds: list[list[str]], *, cap: float, env: dict, log) -> dict:
  """One foreground step's commands in order, within `cap` seconds."""
  step_start = time.monotonic()
  record = {"commands": [], "results": {}}
  for k, cmd in enumerate(cmds):
    remaining = cap - (time.monotonic() - step_start)
    if step == "demo" and k == 0:  # train until the samples' reserve, then sample
      remaining = max(remaining - SAMPLE_RESERVE_S, MIN_STEP_S)
    t0 = time.monotonic()
    rc, lines = run_logged(cmd, timeout_s=remaining, env=env, log=log)
    record["commands"].append({"cmd": cmd[1:], "rc": rc, "wall_s": round(time.monotonic() - t0, 1)})
    record["results"].update(parse_results(lines))
    # setup stops at its first failure; the demo samples whatever checkpoint exists.
    if rc != 0 and not (step == "demo" and k == 0):
      break
  record["wall_s"] = round(time.monotonic() - step_start, 1)
  # The demo's training is cut at its deadline by design; its samples must come.
  rcs = [c["rc"] for c in record["commands"]]
  record["ok"] = rcs[-1] == 0 if step == "demo" else all(rc == 0 for rc in rcs)
  return record


def _collect_demo_files(workdir: Path, out: Path) -> None:
  samples = workdir / "samples"
  for src, name in (
    (samples / "strip.png", "demo_strip.png"),
    (samples / "video_000.gif", "demo_video_000.gif"),
    (workdir / "metrics.jsonl", "demo_metrics.jsonl"),
  ):
    if src.exists():
      shutil.copyfile(src, out / name)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--steps", default=",".join(STEPS), help=f"comma-separated, in order, from {','.join(STEPS)}"
  )
  parser.add_argument(
    "--budget_s", type=float, default=560, help="seconds for all steps (a device call may run 600)"
  )
  parser.add_argument(
    "--out",
    default=os.environ.get("OUT", ""),
    help="where summary.json and the logs go (default: $OUT)",
  )
  parser.add_argument(
    "--rehearse",
    action="store_true",
    help="tiny sizes with this interpreter, no wheels: a CPU check",
  )
  parser.add_argument("--dry_run", action="store_true", help="print the commands only")
  parser.add_argument(
    "--caps", default="", help="STEP=SECONDS,... over the default caps " + json.dumps(STEP_CAPS)
  )
  parser.add_argument(
    "--table4_batch",
    type=int,
    default=4,
    help="videos per Table 4 step (4 measured on an H200; larger batches "
    "show whether the latency ratio follows the FLOPs)",
  )
  parser.add_argument(
    "--work",
    default=str(WORK),
    help="site packages, compile cache and the demo's workdir (a second "
    "session on the same folder reuses them; the demo resumes)",
  )
  parser.add_argument(
    "--download_wheels",
    metavar="DIR",
    help="download the device's wheels into DIR and exit (needs pip's index)",
  )
  args = parser.parse_args(argv)
  if args.download_wheels:
    return subprocess.run(wheel_download_command(Path(args.download_wheels))).returncode
  steps = [s for s in args.steps.split(",") if s]
  unknown = sorted(set(steps) - set(STEPS))
  if unknown:
    parser.error(f"--steps: unknown {unknown}; expected some of {list(STEPS)}")
  try:
    caps = parse_caps(args.caps)
  except ValueError as e:
    parser.error(str(e))
  if args.dry_run:
    out = Path(args.out or "OUT")
    for step in steps:
      for cmd in step_commands(
        step,
        python="python3",
        out=out,
        work=Path("WORK"),
        rehearse=args.rehearse,
        wheels=sorted(WHEELS.glob("*.whl")),
        site=Path("WORK/site"),
        table4_batch=args.table4_batch,
      ):
        shown = ["<versions, devices, imports>" if "\n" in a else a for a in cmd]
        print(f"{step}: {' '.join(shown)}")
    return 0
  if not args.out:
    parser.error("--out: no folder given and $OUT is unset")
  summary = run_session(
    steps,
    out=Path(args.out),
    budget_s=args.budget_s,
    rehearse=args.rehearse,
    work=Path(args.work),
    caps=caps,
    table4_batch=args.table4_batch,
  )
  print(f"DEVICE_SESSION_JSON {json.dumps(summary)}")
  done = [s.get("ok", False) for s in summary["steps"].values()]
  return 0 if done and all(done) and len(done) == len(steps) else 1


if __name__ == "__main__":
  sys.exit(main())
