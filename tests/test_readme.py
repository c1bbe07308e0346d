"""The README's Python example runs as written."""

import re
from pathlib import Path

import numpy as np


def test_readme_example_runs():
  text = (Path(__file__).parents[1] / "README.md").read_text()
  code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
  scope = {}
  exec(compile(code, "README.md", "exec"), scope)
  assert scope["video"].shape == (2, 8, 16, 16, 3)
  assert set(scope["losses"]) == {"loss", "loss_centre", "loss_residual"}
  assert np.isfinite(np.asarray(scope["video"])).all()
