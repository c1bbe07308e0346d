"""The GPU session driver runs the right sizes there, tiny ones here, keeps to its budget
and returns what it measured (its commands are rehearsed end to end in the slow test)."""

import contextlib
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from scripts import device_session

REPO = Path(device_session.__file__).resolve().parents[1]


def _running(pid: int) -> bool:
  """Alive and not a zombie (a killed orphan waits for init, which may never reap it)."""
  try:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
  except OSError:  # gone (FileNotFoundError, or ESRCH while it is reaped)
    return False
  return fields[0] != "Z"


def _carrying(marker: str) -> list[int]:
  """Live processes with `marker` among their arguments."""
  pids = []
  for entry in Path("/proc").iterdir():
    if entry.name.isdigit():
      try:
        cmdline = (entry / "cmdline").read_bytes()
      except OSError:  # it ended while we looked
        continue
      if marker.encode() in cmdline.split(b"\0") and _running(int(entry.name)):
        pids.append(int(entry.name))
  return pids


def _assert_all_gone(marker: str, within_s: float = 120) -> None:
  """Every process started with `marker` has died. SIGKILL lands asynchronously, so poll;
  the deadline only bounds a hang (a loaded machine may take a while, never this long)."""
  deadline = time.monotonic() + within_s
  while (alive := _carrying(marker)) and time.monotonic() < deadline:
    time.sleep(0.05)
  for pid in alive:  # leave nothing behind for the rest of the suite
    with contextlib.suppress(ProcessLookupError):
      os.kill(pid, signal.SIGKILL)
  assert not alive, f"still running {within_s:.0f} s after its group was killed: {alive}"


def _with_grandchild(marker: str) -> list[str]:
  """A command that starts a child of its own, prints its pid, and never ends by itself;
  both carry `marker` in their arguments, so the test finds them however far it got."""
  code = (
    "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(600)', sys.argv[1]]); print('child', p.pid, flush=True); "
    "time.sleep(600)"
  )
  return [sys.executable, "-c", code, marker]


def _commands(step, rehearse):
  return device_session.step_commands(
    step,
    python="python3",
    out=Path("OUT"),
    work=Path("WORK"),
    rehearse=rehearse,
    wheels=[],
    site=Path("WORK/site"),
  )


def _defined_flags(script: Path) -> set[str]:
  return set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", script.read_text()))


@pytest.mark.parametrize("rehearse", [False, True])
def test_every_benchmark_flag_a_step_passes_is_defined_by_its_script(rehearse):
  for step in ("mfu", "table4"):
    (cmd,) = _commands(step, rehearse)
    assert cmd[1] == "-m", cmd  # benchmarks run as modules of their package
    script = REPO / (cmd[2].replace(".", "/") + ".py")
    flags = {a[2:].split("=")[0] for a in cmd[3:] if not a.startswith("--config.")}
    assert flags <= _defined_flags(script), (step, flags - _defined_flags(script))


@pytest.mark.flow  # the script as the device runs it: make test-flows
def test_the_script_starts_with_the_standard_library_alone():
  """A bare device has none of our packages: as a file, without site-packages (-S) and
  isolated from the environment (-I), it still starts and prints what it would run."""
  proc = subprocess.run(
    [sys.executable, "-I", "-S", "scripts/device_session.py", "--dry_run", "--steps=mfu,table4"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "mfu: python3 -m benchmarks.train_throughput" in proc.stdout
  assert "table4: python3 -m benchmarks.table4 --preset=table8" in proc.stdout


def test_device_sizes_are_the_issues_and_rehearsal_sizes_are_tiny():
  (mfu,) = _commands("mfu", rehearse=False)
  assert {
    "--config=configs/ucf101.py",
    "--config.data.image_size=64",
    "--config.model.dtype=bfloat16",
    "--peak_tflops=989",
  } <= set(mfu)
  (table4,) = _commands("table4", rehearse=False)
  assert {"--preset=table8", "--dtype=bfloat16", "--json=OUT/table4.json"} <= set(table4)
  train, sample = _commands("demo", rehearse=False)
  assert "--config=configs/demo.py:gpu" in train and "--config=configs/demo.py:gpu" in sample
  assert "--config.sample.num_videos=8" in sample
  (bigger,) = device_session.step_commands(
    "table4",
    python="python3",
    out=Path("OUT"),
    work=Path("WORK"),
    rehearse=False,
    wheels=[],
    site=Path("WORK/site"),
    table4_batch=16,
  )
  assert "--batch=16" in bigger
  (rehearsed,) = _commands("table4", rehearse=True)
  assert "--preset=micro" in rehearsed and "--sampler_steps=2" in rehearsed
  with pytest.raises(ValueError, match="unknown step 'train'"):
    _commands("train", rehearse=False)


def test_wheels_are_this_venvs_versions_for_cpython_312_but_a_flax_for_jax_0_11():
  cmd = device_session.wheel_download_command(Path("W"), python="py")
  assert cmd[:4] == ["py", "-m", "pip", "download"]
  assert cmd[cmd.index("--python-version") + 1] == "3.12" and "--no-deps" in cmd
  assert "flax==0.12.12" in cmd  # the image's jax 0.11 cannot import flax 0.12.8
  assert f"grain=={importlib.metadata.version('grain')}" in cmd
  assert f"orbax-checkpoint=={importlib.metadata.version('orbax-checkpoint')}" in cmd


@pytest.mark.parametrize("rehearse", [False, True])
def test_precompile_compiles_exactly_what_the_timed_steps_then_run(rehearse):
  """Same script, same flags (so the same XLA programs: the timed runs load them from the
  compile cache), plus --compile_only and minus the JSON output; the train step's two
  variants in processes of their own, side by side."""
  precompile = _commands("precompile", rehearse)
  (mfu,), (table4,) = (_commands(step, rehearse) for step in device_session.TIMED)
  strip = lambda cmd: [a for a in cmd if not a.startswith(("--json=", "--variants="))]
  assert "--variants=no_remat,cudnn,remat" in mfu
  assert precompile == [
    strip(mfu) + ["--compile_only", "--variants=no_remat"],
    strip(mfu) + ["--compile_only", "--variants=cudnn"],
    strip(mfu) + ["--compile_only", "--variants=remat"],
    strip(table4) + ["--compile_only"],
  ]
  assert {"compile_only", "variants"} <= _defined_flags(REPO / "benchmarks/train_throughput.py")
  assert "compile_only" in _defined_flags(REPO / "benchmarks/table4.py")


def test_timed_steps_wait_for_the_background_and_it_cannot_outlive_its_deadline(tmp_path):
  """precompile's processes run beside the demo; mfu must not start timing while they
  still use the device, and a background job past its deadline is killed (rc 124) with
  its children. Nothing here races a clock: commands that end by themselves are waited for
  (their 300 s deadline only bounds a hang), and one that never ends is killed at its
  deadline however slowly a loaded machine starts it."""
  env = dict(os.environ)
  job = device_session.Background(
    [
      [sys.executable, "-c", "import time; time.sleep(0.5); print('done')"],
      [sys.executable, "-c", "print('second')"],
    ],
    timeout_s=300,
    env=env,
    log_path=tmp_path / "bg.log",
  )
  records = job.join()
  assert [r["rc"] for r in records] == [0, 0]
  assert records[0]["wall_s"] >= 0.5  # join waited out its sleep (a lower bound: safe)
  log = (tmp_path / "bg.log").read_text()
  assert "done" in log and "second" in log

  marker = f"vf-background-{uuid.uuid4().hex}"
  endless = device_session.Background(
    [_with_grandchild(marker)], timeout_s=3, env=env, log_path=tmp_path / "endless.log"
  )
  (record,) = endless.join()
  assert record["rc"] == 124 and record["wall_s"] >= 3  # killed, and not before its deadline
  assert endless.procs[0][1].returncode == -signal.SIGKILL
  _assert_all_gone(marker)


def test_results_are_the_json_lines_and_the_sample_clis_smoothness():
  lines = [
    "I1203 sampling.py:256] Sampling with the EMA parameters of step 600 in /w/c.",
    "noise",
    'TABLE4_JSON {"ratios": {"latency_ratio": 0.5}}',
    "TRAIN_JSON {broken}",
    "wrote 8 videos (mp4 + gif) and a frame strip to /w/samples/ (frame-to-frame "
    "change 9.7/255, brightness flicker 3.6/255, frames to centre 5.4/255)",
    "samples: objects move 0.25 px/frame along a path of 0.35 (straightness 0.71)",
    "data:    objects move 0.30 px/frame along a path of 0.35 (straightness 0.86)",
  ]
  results = device_session.parse_results(lines)
  assert results["TABLE4"] == {"ratios": {"latency_ratio": 0.5}}
  assert results["TRAIN"] == {"unparsed": "{broken}"}
  assert results["SAMPLES"] == {
    "frame_change": 9.7,
    "brightness_flicker": 3.6,
    "centre_distance": 5.4,
    "checkpoint_step": 600,
    "samples_motion": {"speed": 0.25, "path_speed": 0.35, "straightness": 0.71},
    "data_motion": {"speed": 0.30, "path_speed": 0.35, "straightness": 0.86},
  }


def test_a_step_past_its_deadline_is_killed_with_its_children(tmp_path):
  """Gone with its group, not left running on the device. The step never ends by itself,
  so it is killed (rc 124) whatever the load; its child is found by the marker in its
  arguments, not by a pid the step must print before its deadline."""
  marker = f"vf-step-{uuid.uuid4().hex}"
  with open(tmp_path / "log", "w") as log:
    rc, _ = device_session.run_logged(
      _with_grandchild(marker), timeout_s=8, env=dict(os.environ), log=log
    )
  assert rc == 124
  _assert_all_gone(marker)
  assert "[killed after 8 s]" in (tmp_path / "log").read_text()


def test_caps_override_a_steps_share_and_bad_ones_are_refused(capsys):
  caps = device_session.parse_caps("precompile=560,mfu=90.5")
  assert caps["precompile"] == 560 and caps["mfu"] == 90.5
  assert caps["demo"] == device_session.STEP_CAPS["demo"]
  with pytest.raises(ValueError, match="unknown step 'train'"):
    device_session.parse_caps("train=10")
  with pytest.raises(SystemExit):
    device_session.main(["--caps=mfu=soon", "--out=OUT"])
  assert "'mfu=soon' is not STEP=SECONDS" in capsys.readouterr().err


def test_steps_the_budget_cannot_hold_are_skipped_and_the_summary_says_so(tmp_path):
  assert (
    device_session.main(
      ["--steps=mfu,table4", "--budget_s=0", f"--out={tmp_path}", f"--work={tmp_path / 'work'}"]
    )
    == 1
  )
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert set(summary["steps"]) == {"mfu", "table4"}
  assert all("skipped" in s for s in summary["steps"].values())


@pytest.mark.slow  # every step at tiny sizes: ~4 min on 2 cores
def test_rehearsal_runs_every_step_and_returns_its_numbers(tmp_path):
  out = tmp_path / "out"
  # Deadlines that only bound a hang: the device's caps (the demo trains until its cap
  # less 90 s) are sized for a GPU, and a step cut by one on a loaded CPU fails below.
  caps = ",".join(f"{step}=1200" for step in device_session.STEP_CAPS)
  rc = device_session.main(
    [
      "--rehearse",
      "--budget_s=7200",
      f"--caps={caps}",
      f"--out={out}",
      f"--work={tmp_path / 'work'}",
    ]
  )
  summary = json.loads((out / "summary.json").read_text())
  assert rc == 0, summary
  steps = summary["steps"]
  assert all(steps[s]["ok"] for s in device_session.STEPS)
  assert "compiled videofusion" in (out / "precompile.log").read_text()
  mfu = steps["mfu"]["results"]["TRAIN_THROUGHPUT"]
  assert mfu["rows"]["no remat"]["step_s"] > 0 and mfu["model_flops"] > 0
  profiled = {c["group"] for c in mfu["rows"]["no remat"]["profile"]["cells"]}
  assert {"base_unet/resnet_block", "residual_unet/resnet_block"} <= profiled
  assert mfu["commit"] and json.loads((out / "train_throughput.json").read_text()) == mfu
  assert steps["table4"]["results"]["TABLE4"]["ratios"]["latency_ratio"] > 0
  assert steps["demo"]["results"]["SAMPLES"]["frame_change"] >= 0
  assert steps["demo"]["results"]["SAMPLES"]["checkpoint_step"] == 2
  assert 0.2 < steps["demo"]["results"]["SAMPLES"]["data_motion"]["speed"] < 0.4
  assert (out / "demo_strip.png").exists() and (out / "demo_metrics.jsonl").exists()
  assert len(list(out.iterdir())) <= 8  # what a device call returns
