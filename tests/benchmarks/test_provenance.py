"""Every benchmark result names its hardware and commit the same way."""

import json
import re
import subprocess
from pathlib import Path

from benchmarks import provenance


def test_commit_is_this_checkouts_head_or_unknown_outside_git(tmp_path, monkeypatch):
  repo = Path(provenance.__file__).resolve().parents[1]
  try:
    head = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    head = None  # a copied tree: nothing to compare with
  if head is not None:
    assert re.fullmatch(re.escape(head) + r"\+?", provenance.commit())
  monkeypatch.setattr(provenance, "_REPO", tmp_path)  # not a git checkout
  assert provenance.commit() == "unknown"


def test_emit_prints_the_table_then_one_parseable_line_and_writes_the_json(tmp_path, capsys):
  result = {"ratio": 0.5, **provenance.environment()}
  path = tmp_path / "out.json"
  provenance.emit(result, "the table", tag="DEMO", json_path=str(path))
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "the table" and lines[-1].startswith("DEMO_JSON ")
  assert json.loads(lines[-1][len("DEMO_JSON ") :]) == result == json.loads(path.read_text())
  assert provenance.describe(result).startswith(f"jax {result['jax']}, {result['device']}, ")
  assert f"commit {result['commit']}" in provenance.describe(result)
