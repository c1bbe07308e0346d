"""The Colab notebooks run top to bottom (tiny settings, CPU) and are stored clean.

  make test-notebooks     # = .venv-colab/bin/python -m pytest -q colab/test_notebooks.py

Not part of `make test`: it lives outside tests/ and runs in .venv-colab, Python 3.12 as
in Colab, with the [notebooks] extra (the Makefile makes it). The notebooks run one
after another in one scratch folder, in the order a reader would open them, so
decomposition.ipynb finds the demo model quickstart.ipynb trained.
VIDEOFUSION_NOTEBOOK_OUT=DIR keeps the executed copies (with outputs) in DIR.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = ("quickstart.ipynb", "decomposition.ipynb", "convert_and_sample.ipynb", "evaluate.ipynb")


def _build_module():
  spec = importlib.util.spec_from_file_location("build_notebooks", HERE / "build_notebooks.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_notebook_is_listed():
  assert sorted(p.name for p in HERE.glob("*.ipynb")) == sorted(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_stored_notebook_is_clean_and_generated(name):
  text = (HERE / name).read_text()
  nb = nbformat.reads(text, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (name, cell.id)
  assert not {"widgets", "execution"} & set(nb.metadata), nb.metadata.keys()
  # The JSON is exactly what colab/build_notebooks.py writes (edit the script, not the JSON).
  assert _build_module().build()[name] == text, "run python colab/build_notebooks.py"


def _run_install_cell(name: str, cwd: Path, tmp_path: Path):
  """The notebook's install cell in a fresh interpreter that cannot import videofusion_jax
  (-I -S: no site-packages, no environment), as in a bare Colab runtime. IPython's %pip
  is the boundary: a stand-in records the line it would run instead of installing."""
  nb = nbformat.read(HERE / name, as_version=4)
  cell = next(c.source for c in nb.cells if c.cell_type == "code")
  script = tmp_path / "install_cell.py"
  script.write_text(
    "import json, sys\nCALLS = []\n"
    "class _IPython:\n"
    "  def run_line_magic(self, magic, line):\n    CALLS.append([magic, line])\n"
    "get_ipython = _IPython\n"
    + cell
    + "\nprint('RESULT', json.dumps({'calls': CALLS, 'path0': sys.path[0]}))\n"
  )
  return subprocess.run(
    [sys.executable, "-I", "-S", str(script)], cwd=cwd, capture_output=True, text=True, timeout=60
  )


@pytest.mark.parametrize("name", ORDER)
def test_install_cell_installs_the_clone_it_runs_in(name, tmp_path):
  """Opened from a checkout (here colab/) where nothing is installed: `%pip install -e` of
  that clone with the `colab` extra and the notebook's own, then importable at once."""
  proc = _run_install_cell(name, ROOT / "colab", tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(proc.stdout.split("RESULT ", 1)[1])
  extras = {"convert_and_sample.ipynb": "colab,convert", "evaluate.ipynb": "colab,eval"}
  want = extras.get(name, "colab")
  accelerator = "cuda" if os.path.exists("/dev/nvidia0") else None  # as the cell decides
  want = ",".join(filter(None, [want, accelerator]))
  assert result["calls"] == [["pip", f"install -q -e {ROOT}[{want}]"]]
  assert result["path0"] == str(ROOT)


def test_install_cell_outside_a_clone_asks_for_the_repository_url(tmp_path):
  """No placeholder URL to clone: REPO_URL starts empty, and the cell says to set it."""
  proc = _run_install_cell("quickstart.ipynb", tmp_path, tmp_path)
  assert proc.returncode == 1
  assert "set REPO_URL in this cell to the git URL" in proc.stderr, proc.stderr[-2000:]
  for name in ORDER:
    nb = nbformat.read(HERE / name, as_version=4)
    install = next(c.source for c in nb.cells if c.cell_type == "code")
    assert 'REPO_URL = ""' in install.splitlines(), name
    assert "colab.research.google.com/github" not in nbformat.writes(nb), name  # no badge


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  return tmp_path_factory.mktemp("notebooks")


def _outputs(nb, cell_type="code"):
  for cell in nb.cells:
    if cell.cell_type == cell_type:
      yield from cell.get("outputs", [])


def _text(nb) -> str:
  parts = []
  for out in _outputs(nb):
    if out.output_type == "stream":
      parts.append(out.text)
    elif "text/plain" in out.get("data", {}):
      parts.append(out.data["text/plain"])
  return "".join(parts)


def _numbers(pattern: str, text: str) -> list[float]:
  return [float(m) for m in re.findall(pattern, text)]


@pytest.mark.parametrize("name", ORDER)
def test_notebook_executes(name, workspace, monkeypatch):
  monkeypatch.setenv("VIDEOFUSION_TINY", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  for var, default in (
    ("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax")),
    ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
    ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1"),
  ):
    monkeypatch.setenv(var, os.environ.get(var, default))
  nb = nbformat.read(HERE / name, as_version=4)
  start = time.time()
  try:  # a failing cell raises CellExecutionError with the cell's traceback
    # Deadlines that only bound a hang. nbclient's defaults are short: 60 s for the kernel
    # to start, and 4 s after a cell's reply for its last outputs, after which it drops
    # them with a warning and the asserts on the text below fail on a loaded machine.
    NotebookClient(
      nb,
      timeout=600,
      startup_timeout=300,
      iopub_timeout=300,
      raise_on_iopub_timeout=True,
      kernel_name="python3",
      resources={"metadata": {"path": str(workspace)}},
    ).execute()
  finally:
    out_dir = os.environ.get("VIDEOFUSION_NOTEBOOK_OUT")
    if out_dir:
      Path(out_dir).mkdir(parents=True, exist_ok=True)
      nbformat.write(nb, Path(out_dir) / name)
  print(f"\n{name}: executed in {time.time() - start:.0f} s")

  text = _text(nb)
  assert re.search(r"backend: cpu, devices: \['cpu'\]", text), text[:500]
  data = [out.get("data", {}) for out in _outputs(nb)]
  plots = sum("image/png" in d for d in data)
  videos = sum(d.get("text/html", "").count("<video") for d in data)
  assert plots >= 1, f"{name} drew no plot"
  if name == "quickstart.ipynb":
    rows = (workspace / "runs/colab_demo/metrics.jsonl").read_text().splitlines()
    assert len(rows) == 30 // 5  # TINY: 30 steps, logged every 5
    assert videos == 8  # 4 samples + 4 training clips
  elif name == "decomposition.ipynb":
    errors = _numbers(r"max \|measured - theory\| = ([0-9.]+)", text)
    assert len(errors) == 4 and max(errors) < 0.05, errors  # Eq. 7's correlations
    assert videos == 4 + 4 + 2  # noise, 2x2 seed grid, long videos
  elif name == "convert_and_sample.ipynb":
    (err,) = _numbers(r"max \|JAX - torch\| / max \|torch\| = ([0-9.e+-]+)", text)
    assert err < 1e-5
    assert videos == 4
  else:
    scores = {m[0]: float(m[1]) for m in re.findall(r"\s*(.+?): FVD\s+([-0-9.]+)", text)}
    assert set(scores) == {"same distribution", "noisy", "frames shuffled"}, scores
    # Damaged copies are further from the real clips than clips of the same distribution.
    assert scores["same distribution"] < min(scores["noisy"], scores["frames shuffled"])
    assert videos == 4
