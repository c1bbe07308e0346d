"""Counting the train steps skipped for a non-finite loss or gradient, without a host
sync per step.

The train step skips such a step on the device (`step.keep_if_finite`). The loop hands
each step's `nonfinite` flag to `NonFiniteSteps.record`, a tiny jitted update of four
device counters that runs asynchronously like the step itself; the host reads them only
where it already waits for the device (a metrics line, a checkpoint, the end).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from videofusion_jax.cli import DIVERGED

# The counters: the current run of consecutive non-finite steps, all of them, steps
# recorded, and the step (counted from the loop's start) at which a run first reached
# the limit (0: never).
_RUN, _TOTAL, _SEEN, _HIT = range(4)


class Diverged(RuntimeError):
  """Training stopped after `train.max_nonfinite_steps` consecutive non-finite steps."""

  exit_code = DIVERGED


@jax.jit
def _record(counts: jax.Array, nonfinite: jax.Array, limit: jax.Array) -> jax.Array:
  bad = nonfinite.astype(jnp.int32)
  run = (counts[_RUN] + 1) * bad
  seen = counts[_SEEN] + 1
  hit = jnp.where((counts[_HIT] == 0) & (run >= limit), seen, counts[_HIT])
  return jnp.stack([run, counts[_TOTAL] + bad, seen, hit])


class NonFiniteSteps:
  """The skipped steps of a run that started (or resumed) at `first_step`."""

  def __init__(self, max_consecutive: int, first_step: int):
    self.max_consecutive = max_consecutive
    self.first_step = first_step
    self._limit = jnp.asarray(max_consecutive, jnp.int32)
    self._counts = jnp.zeros(4, jnp.int32)

  def record(self, nonfinite: jax.Array) -> None:
    self._counts = _record(self._counts, nonfinite, self._limit)

  def read(self) -> dict[str, int]:
    """The counters on the host (waits for the steps recorded so far)."""
    run, total, _, hit = (int(c) for c in jax.device_get(self._counts))
    return {"run": run, "total": total, "hit": hit}

  def check(self, checkpoint_hint: str) -> dict[str, int]:
    """The counters; raises `Diverged` once a run of non-finite steps reached the limit,
    naming its steps. `checkpoint_hint` says which checkpoint holds the last good state."""
    counts = self.read()
    if counts["hit"]:
      last = self.first_step + counts["hit"]
      first = last - self.max_consecutive + 1
      raise Diverged(
        f"training diverged: steps {first}-{last} had a non-finite loss or gradient "
        f"(train.max_nonfinite_steps={self.max_consecutive}); their updates were "
        f"skipped and nothing non-finite was saved. {checkpoint_hint} Lower optim.lr "
        "(or raise optim.warmup_steps, set optim.grad_clip) and resume."
      )
    return counts
