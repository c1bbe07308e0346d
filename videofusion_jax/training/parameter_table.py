"""The parameter table of each generator, printed at train start and written to
WORKDIR/parameters.txt: every parameter's path, shape, dtype and size (clu's
`parameter_overview` on the pure dict).

Made from the abstract parameters (shapes and dtypes, nothing read from a device), so it
costs no transfer and is the same whether the run starts fresh or resumes.
"""

from __future__ import annotations

import math
import os

import jax
from absl import logging
from clu import parameter_overview
from etils import epath
from flax import nnx

from videofusion_jax import storage

FILE_NAME = "parameters.txt"


def parameter_tables(params: nnx.State) -> str:
  """One table per top-level part of the model (`base` and `residual` generators, the
  shared `condition` embedding; a VDM's single `unet`), then the total."""
  pure = nnx.to_pure_dict(params)
  parts, total = [], 0
  for name, part in pure.items():
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(part))
    total += count
    table = parameter_overview.get_parameter_overview(part, include_stats=False)
    parts.append(f"{name}: {count:,} parameters\n{table}")
  parts.append(f"model: {total:,} parameters")
  return "\n\n".join(parts) + "\n"


def log_parameter_tables(params: nnx.State, workdir: str | os.PathLike) -> epath.Path | None:
  """Log the tables once and write them to WORKDIR/parameters.txt (process 0); return
  the file written, or None on other processes."""
  text = parameter_tables(params)
  logging.info("Parameters:\n%s", text)
  if jax.process_index() != 0:
    return None
  path = storage.path(workdir) / FILE_NAME  # gs://: an object in the bucket
  storage.write_bytes(path, text.encode())
  return path
