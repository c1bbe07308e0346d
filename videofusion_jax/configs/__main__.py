"""Print a config's file path (for `--config` outside a clone), or list the configs.

python -m videofusion_jax.configs demo     # .../site-packages/videofusion_jax/configs/demo.py
python -m videofusion_jax.configs          # every config, its keys and first line
"""

import importlib
import sys

from videofusion_jax import configs
from videofusion_jax.cli import BAD_INPUT


def listing() -> str:
  lines = []
  for name in configs.names():
    module = importlib.import_module(f"videofusion_jax.configs.{name}")
    args = getattr(module, "ARGS", None)
    keys = f":{args.describe()}" if args else ""
    summary = (module.__doc__ or "").strip().splitlines()[0]
    lines.append(f"{name}.py{keys}\n    {summary}")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  if len(argv) > 2:
    print(f"error: expected at most one config name; got {argv[1:]}", file=sys.stderr)
    return BAD_INPUT
  if len(argv) == 1:
    print(listing())
    return 0
  try:
    print(configs.path(argv[1]))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return BAD_INPUT
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
