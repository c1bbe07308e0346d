"""The benchmarks, scripts and tests import what they need without editing sys.path, and
every documented benchmark command names a module that starts.

benchmarks/ is a package run from the repository root (`python -m benchmarks.table4`),
so its scripts share their helpers by plain imports; the tests reach the root's packages
through pytest's `pythonpath` (pyproject.toml), and their child processes run as
`python -m tests.parallel...` from the root. A `sys.path.insert` would make an import
work from one folder only, and hide that.
"""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("benchmarks", "scripts", "tests")
BENCHMARKS = sorted(
  p.stem
  for p in (ROOT / "benchmarks").glob("*.py")
  if 'if __name__ == "__main__":' in p.read_text()
)
# A benchmark run as a file: `from benchmarks import ...` fails there, so no doc may show it.
FILE_COMMAND = re.compile(r"python3?\s+benchmarks/\w+\.py")
MODULE_COMMAND = re.compile(r"python3?\s+-m\s+benchmarks\.([a-z]\w*)")  # not NAME
SCRIPT_COMMAND = re.compile(r"python3?\s+scripts/([a-z]\w*)\.py")  # run as files


def path_edits(source: str) -> list[int]:
  """Lines that touch the import path: any use of `sys.path` (insert, append, assign,
  ...), `from sys import path`, and `site.addsitedir(...)`."""
  lines = []
  for node in ast.walk(ast.parse(source)):
    if (
      isinstance(node, ast.Attribute)
      and node.attr == "path"
      and isinstance(node.value, ast.Name)
      and node.value.id == "sys"
    ):
      lines.append(node.lineno)
    elif isinstance(node, ast.ImportFrom) and node.module == "sys":
      lines += [node.lineno for a in node.names if a.name == "path"]
    elif isinstance(node, ast.Attribute) and node.attr == "addsitedir":
      lines.append(node.lineno)
  return sorted(lines)


def test_the_check_finds_each_way_of_editing_the_path():
  source = (
    "import os, sys, site\n"
    "sys.path.insert(0, os.getcwd())\n"
    "sys.path += ['x']\n"
    "from sys import path\n"
    "site.addsitedir('y')\n"
    "print(os.path.join('a', 'b'))\n"
  )  # os.path is not sys.path
  assert path_edits(source) == [2, 3, 4, 5]


def test_no_benchmark_script_or_test_edits_sys_path():
  found = {}
  for folder in CHECKED:
    for path in sorted((ROOT / folder).rglob("*.py")):
      if lines := path_edits(path.read_text()):
        found[str(path.relative_to(ROOT))] = lines
  assert not found, f"sys.path edited (file: lines): {found}"


def _documents() -> list[Path]:
  """Where a user reads a command: the README, docs/, and the scripts' own docstrings
  and messages. Not the results and their history (benchmarks/RESULTS.md or wherever
  they live): an entry quotes the command its result was run with, in that commit's form."""
  docs = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").rglob("*.md"))]
  docs = [d for d in docs if not re.search(r"result|histor", d.name, re.IGNORECASE)]
  for folder in ("benchmarks", "scripts", "videofusion_jax", "configs", "colab"):
    docs += sorted((ROOT / folder).rglob("*.py"))
  return [d for d in docs if d.exists()]


def test_documented_benchmark_and_script_commands_name_files_that_exist():
  old, missing = [], []
  for doc in _documents():
    text = doc.read_text()
    old += [f"{doc.relative_to(ROOT)}: {m[0]}" for m in FILE_COMMAND.finditer(text)]
    missing += [
      f"{doc.relative_to(ROOT)}: {m[0]}"
      for m in MODULE_COMMAND.finditer(text)
      if m[1] not in BENCHMARKS
    ]
    missing += [
      f"{doc.relative_to(ROOT)}: {m[0]}"
      for m in SCRIPT_COMMAND.finditer(text)
      if not (ROOT / "scripts" / f"{m[1]}.py").is_file()
    ]
  assert not old, f"run benchmarks as `python -m benchmarks.NAME`: {old}"
  assert not missing, f"no such benchmark script: {missing}"


@pytest.mark.flow  # one interpreter start per benchmark: make test-flows
@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_starts_as_its_docstring_says(name):
  """`--help` imports the whole script (its helpers, configs/, the package) and prints
  its docstring, whose usage lines name the module the way it was just run."""
  proc = subprocess.run(
    [sys.executable, "-m", f"benchmarks.{name}", "--help"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  output = proc.stdout + proc.stderr
  assert "Traceback" not in output, output[-3000:]
  assert proc.returncode in (0, 1), output[-3000:]  # absl's --help exits 1, argparse's 0
  assert f"-m benchmarks.{name}" in output, output[:2000]
