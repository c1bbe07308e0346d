"""Building a model's abstract shapes (`nnx.eval_shape`, what train and sample do first),
with flax as it is and through `ModelSpec.build` (models/tracing.py), side by side.

  python -m benchmarks.traced_build --configs=demo,ucf101,webvid
"""

from __future__ import annotations

import importlib
import time

from absl import app, flags
from flax import nnx

from benchmarks import provenance
from videofusion_jax.models.from_config import model_spec

_CONFIGS = flags.DEFINE_list("configs", ["demo", "ucf101"], "Config modules under configs/.")
_JSON = flags.DEFINE_string("json", "", "Also write the result here.")


def seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main(argv):
  del argv
  rows, result = [], {}
  for name in _CONFIGS.value:
    spec = model_spec(importlib.import_module(f"configs.{name}").get_config())
    plain = seconds(lambda: nnx.eval_shape(lambda: spec.cls(spec.config, rngs=nnx.Rngs(0))))
    quiet = seconds(lambda: nnx.eval_shape(lambda: spec.build(0)))
    result[name] = {"flax_s": plain, "build_s": quiet, "ratio": plain / quiet}
    rows.append(f"| {name} | {plain:.2f} | {quiet:.2f} | {plain / quiet:.1f}x |")
  table = "\n".join([f"{provenance.describe(provenance.environment())}",
                     "| config | nnx.eval_shape, flax as is (s) | ModelSpec.build (s) | ratio |",
                     "|---|---|---|---|", *rows])
  provenance.emit(result, table, tag="TRACED_BUILD", json_path=_JSON.value)


if __name__ == "__main__":
  app.run(main)
