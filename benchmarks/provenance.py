"""Where a benchmark ran, for its printed table and its JSON result.

benchmarks/RESULTS.md records every entry with its hardware and commit; each benchmark
puts `environment()` in its JSON and starts its output with it (`describe`), so nobody copies
those by hand. `emit` ends a benchmark the same way everywhere: the table, the optional
JSON file, and one `TAG_JSON {...}` line that tests and scripts parse.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import jax

_REPO = Path(__file__).resolve().parents[1]


def commit() -> str:
  """The checkout's short commit, `+` when the tree has uncommitted changes to tracked
  files, or "unknown" outside a git checkout (an installed wheel). A tree copied without
  its .git (a lent GPU machine) names its commit in $VIDEOFUSION_COMMIT."""
  if named := os.environ.get("VIDEOFUSION_COMMIT"):
    return named
  try:
    head = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"],
      cwd=_REPO,
      check=True,
      capture_output=True,
      text=True,
      timeout=10,
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "status", "--porcelain", "--untracked-files=no"],
      cwd=_REPO,
      check=True,
      capture_output=True,
      text=True,
      timeout=10,
    ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return head + ("+" if dirty else "")


def device(devices=None) -> str:
  """`8 x cpu (cpu)`, `1 x NVIDIA H200 (gpu)`: the devices a run used."""
  devices = devices or jax.devices()
  return f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})"


def host() -> str:
  return platform.processor() or platform.machine()


def environment(devices=None) -> dict:
  """The JSON fields every benchmark result carries."""
  return {
    "device": device(devices),
    "host": host(),
    "jax": jax.__version__,
    "commit": commit(),
    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


def describe(env: dict) -> str:
  """`environment()`'s fields as the start of a table's first line."""
  return f"jax {env['jax']}, {env['device']}, {env['host']}, commit {env['commit']}"


def hardware_line(devices=None) -> str:
  """The first line of the benchmarks that print as they go."""
  return describe(environment(devices))


def emit(result: dict, table: str, *, tag: str, json_path: str = "") -> None:
  """Print the table, write `result` to `json_path` when given, then print the
  machine-readable `TAG_JSON {...}` line (always last)."""
  print(table)
  text = json.dumps(result)
  if json_path:
    Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
  print(f"{tag}_JSON {text}")
