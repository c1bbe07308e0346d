"""Host time per train step: state and EMA passed as nnx.State trees vs as lists.

  python -m benchmarks.step_dispatch                          # the CPU demo's model
  python -m benchmarks.step_dispatch --config=configs/demo.py:gpu   # on a GPU

A jitted call flattens its pytree arguments and rebuilds its pytree results on the
host before and after the device runs; nnx.State does both in Python, a few
microseconds an array, so a small model whose step takes a few milliseconds on a GPU
can be bound by the host. The training loop passes lists (`training.step.StateLeaves`).
Both ways are built here from the same state, with the loop's shardings and donation:

- `no-op`: a step that returns its state and EMA unchanged, so the device does nothing
  and the time is the host's alone: the ceiling on steps per second it sets;
- `train`: the real train step, `--steps` of them chained as the loop chains them
  (its time is the device's when the device is the slower one).

The two ways are interleaved round by round and each time is a median over rounds.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import provenance
from benchmarks.train_setup import TrainSetup, train_setup
from videofusion_jax.training.step import (StateLeaves, StepConfig,
                                           make_train_step)

WAYS = ("trees", "leaves")


def _no_op_step(shardings, layout: StateLeaves | None):
  """A jitted step with the train step's signature and layout that changes nothing."""
  return jax.jit(lambda state, ema, batch, key, schedule: (state, ema, {"key": key}),
                 donate_argnums=(0, 1), **shardings.jit_kwargs(layout))


class Way:
  """One way of passing the state: its two steps and the state it carries."""

  def __init__(self, setup: TrainSetup, leaves: bool):
    ts = setup.ts
    self.layout = StateLeaves.of(ts.state, ts.ema) if leaves else None
    copy = jax.tree.map(lambda x: x.copy(), (ts.state, ts.ema))  # each way donates its own
    self.carried = self.layout.flatten(*copy) if leaves else copy
    self.train = make_train_step(ts.graphdef, StepConfig(lam=setup.spec.config.lam),
                                 shardings=setup.shardings, leaves=self.layout)
    self.no_op = _no_op_step(setup.shardings, self.layout)

  def run(self, fn, calls: int, batch, schedule) -> float:
    """Seconds per call of `fn` over `calls` chained calls, the last one waited for."""
    key = jax.random.key(0)  # the train step folds in its step count, as in train()
    start = time.perf_counter()
    for _ in range(calls):
      *self.carried, out = fn(*self.carried, batch, key, schedule)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def measure(config, *, steps: int, calls: int, rounds: int) -> dict:
  """Both ways side by side on `config`'s model and batch -> the result dict."""
  env = provenance.environment()
  setup = train_setup(config)
  batch, schedule = setup.batch, setup.schedule
  ways = {name: Way(setup, leaves=name == "leaves") for name in WAYS}
  arrays = len(jax.tree.leaves((setup.ts.state, setup.ts.ema)))
  del setup
  for way in ways.values():  # compile and warm up
    way.run(way.no_op, 2, batch, schedule)
    way.run(way.train, 2, batch, schedule)
  times = {(name, kind): [] for name in WAYS for kind in ("no-op", "train")}
  for _ in range(rounds):
    for name, way in ways.items():
      times[name, "no-op"].append(way.run(way.no_op, calls, batch, schedule))
      times[name, "train"].append(way.run(way.train, steps, batch, schedule))
  ms = {key: 1e3 * float(np.median(t)) for key, t in times.items()}
  rows = {name: {"no_op_ms": ms[name, "no-op"], "train_step_ms": ms[name, "train"]}
          for name in WAYS}
  ratios = {"no_op": ms["leaves", "no-op"] / ms["trees", "no-op"],
            "train_step": ms["leaves", "train"] / ms["trees", "train"]}
  d = config.data
  return dict(env, arrays=arrays, shape=[config.train.batch_size, d.num_frames,
                                         d.image_size, d.image_size],
              rows=rows, ratios=ratios)


def format_table(result: dict) -> str:
  b, n, h, _ = result["shape"]
  lines = [f"{provenance.describe(result)}; {result['arrays']} arrays (state, optimizer, "
           f"EMA), batch {b} x {n} x {h}^2",
           f"{'state passed as':<16} {'no-op step ms':>14} {'train step ms':>14}"]
  lines += [f"{name:<16} {r['no_op_ms']:14.2f} {r['train_step_ms']:14.2f}"
            for name, r in result["rows"].items()]
  r = result["ratios"]
  lines.append(f"{'leaves / trees':<16} {r['no_op']:13.2f}x {r['train_step']:13.2f}x")
  return "\n".join(lines)


def main(argv):
  del argv
  result = measure(_CONFIG.value, steps=_STEPS.value, calls=_CALLS.value,
                   rounds=_ROUNDS.value)
  provenance.emit(result, format_table(result), tag="STEP_DISPATCH", json_path=_JSON.value)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a script (tests import the module next
  to other benchmarks, whose flags share names)."""
  global _CONFIG, _STEPS, _CALLS, _ROUNDS, _JSON
  _CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Experiment config.")
  _STEPS = flags.DEFINE_integer("steps", 5, "Chained train steps per round and way.")
  _CALLS = flags.DEFINE_integer("calls", 50, "No-op calls per round and way.")
  _ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.")
  _JSON = flags.DEFINE_string("json", "", "Also write the result to this JSON file.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
