"""Building NNX modules under a trace without flax's quadratic slow path.

Under `nnx.eval_shape` or a jitted init, every random draw of an `nnx.Rngs` stream
writes its counter with `count[...] += 1`, and flax's `Variable.set_value` then asks the
new value for `getattr(value, "sharding", None)`. On a tracer that attribute raises an
AttributeError whose message JAX builds eagerly: it walks every equation traced so far
to say where the value came from (`DynamicJaxprTracer._origin_msg`), and `getattr`
throws the message away. One walk per draw over a growing trace is quadratic in the
model's size: `nnx.eval_shape` of configs/ucf101.py's model took 29.9 s, 2.9 s without
the walk (2-core CPU; benchmarks/RESULTS.md). Inside `quiet_tracer_errors` a tracer's
error messages lose that provenance paragraph, and nothing else changes.
"""

from __future__ import annotations

import contextlib
import threading

from jax._src.interpreters import partial_eval

_LOCK = threading.Lock()
_depth = 0
_original = None


@contextlib.contextmanager
def quiet_tracer_errors():
  """Within: tracer error messages without the traced-equations walk (see above).

  The switch is process-wide (a class attribute), counted so that nested and
  concurrent uses restore JAX's method only when the last one leaves. A JAX without
  the private method (a later version) is left as it is."""
  global _depth, _original
  tracer = getattr(partial_eval, "DynamicJaxprTracer", None)
  if tracer is None or not hasattr(tracer, "_origin_msg"):
    yield
    return
  with _LOCK:
    if _depth == 0:
      _original = tracer._origin_msg  # pylint: disable=protected-access
      tracer._origin_msg = _no_origin  # pylint: disable=protected-access
    _depth += 1
  try:
    yield
  finally:
    with _LOCK:
      _depth -= 1
      if _depth == 0:
        tracer._origin_msg = _original  # pylint: disable=protected-access


def _no_origin(self) -> str:  # pylint: disable=unused-argument
  return ""
