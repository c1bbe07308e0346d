"""The experiment configs, shipped with the package (docs/configs.md).

Each module has `get_config(arg="")` returning an `ml_collections.ConfigDict`;
`base.py` holds every default with a comment, the others override what differs.
`--config` flags load a file by path, so from a clone's root `configs/demo.py` (a thin
file importing this package's) works as always; from anywhere else, name the
installed file:

  python -m videofusion_jax.train --workdir=runs/demo \\
      --config="$(python -m videofusion_jax.configs demo):setting=gpu"

or in Python: `videofusion_jax.configs.demo.get_config("setting=gpu")`.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
# Modules here that are not experiment configs.
HELPERS = ("__init__", "__main__", "arguments")


def names() -> list[str]:
  """Every config's name ("base", "demo", ...), sorted."""
  return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in HELPERS)


def path(name: str) -> str:
  """The file of config `name` ("demo" or "demo.py"), for a `--config` flag."""
  stem = name.removesuffix(".py")
  if stem not in names():
    raise ValueError(f"no config {name!r}; expected one of {', '.join(names())}")
  return str(HERE / f"{stem}.py")
