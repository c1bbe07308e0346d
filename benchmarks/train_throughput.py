"""Train-step throughput and MFU: remat off / on, XLA / cuDNN attention. (A benchmark.)

  python -m benchmarks.train_throughput --config=configs/ucf101.py \
      --config.data.image_size=64 --config.model.dtype=bfloat16 --batch=32 --peak_tflops=989
  python -m benchmarks.train_throughput            # CPU smoke run: demo config, no MFU

For each variant (`--variants`: no_remat; remat; cudnn = no remat with
`model.attention=cudnn`, cuDNN's fused flash attention on a CUDA GPU), in one process:
compile once (time reported apart), then time `--steps` train steps after a warm-up,
interleaving the variants so they see the same machine state. FLOPs per step come from
XLA's cost analysis of the compiled step (forward + backward + optimizer, as executed,
so remat's recompute is counted as work done, and cuDNN's kernels, which XLA does not
cost, are not); MFU uses the no-remat count for every variant, the way MFU is usually
defined. MFU = model FLOPs / step time / peak. Peak bf16 dense
TFLOP/s per chip: H100/H200 SXM 989, A100 312, TPU v5p 459, v6e 918, v5e 197.
Where each variant's step time goes (`--profile`, on by default): a profiler trace of
two steps, the ops grouped by the layer that issued them (forward and backward alike)
and by what they compute (`op_profile.py`): what to attack when the MFU is low.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import op_profile, provenance, xla_analysis
from benchmarks.train_setup import train_setup
from videofusion_jax.training.step import StateLeaves, StepConfig, make_train_step

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Experiment config.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per variant and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the median is reported.")
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch (0: the config's train.batch_size).")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak bf16 TFLOP/s per device (0: no MFU).")
_JSON = flags.DEFINE_string("json", "", "Also write the result to this JSON file.")
_PROFILE = flags.DEFINE_bool(
  "profile",
  True,
  "Also trace 2 steps of each variant and print its op time by layer and op kind (op_profile.py).",
)
_COMPILE_ONLY = flags.DEFINE_bool(
  "compile_only",
  False,
  "Compile the variants and exit: fills JAX_COMPILATION_CACHE_DIR "
  "so a timed run later loads instead of compiling (scripts/device_session.py).",
)
# name -> its model settings over the config's
VARIANTS = {
  "no_remat": {"remat": False},
  "remat": {"remat": True},
  "cudnn": {"remat": False, "attention": "cudnn"},
}
_VARIANTS = flags.DEFINE_list(
  "variants",
  ["no_remat", "remat"],
  "Which to build: with --compile_only, one per process "
  "compiles them side by side; a timed run needs no_remat (the MFU's FLOP count).",
)


def build(config, model_settings: dict):
  config = config.copy_and_resolve_references()
  config.model.update(model_settings)
  setup = train_setup(config)
  ts, batch, schedule = setup.ts, setup.batch, setup.schedule
  layout = StateLeaves.of(ts.state, ts.ema)  # as train() passes them
  step = make_train_step(
    ts.graphdef, StepConfig(lam=setup.spec.config.lam), shardings=setup.shardings, leaves=layout
  )
  state, ema = layout.flatten(ts.state, ts.ema)
  start = time.perf_counter()
  compiled = step.lower(state, ema, batch, jax.random.key(0), schedule).compile()
  compile_s = time.perf_counter() - start
  return dict(
    fn=compiled,
    state=state,
    ema=ema,
    batch=batch,
    schedule=schedule,
    flops=xla_analysis.flops(compiled),
    compile_s=compile_s,
    temp_gb=xla_analysis.memory_bytes(compiled)["xla_temp"] / 2**30,
  )


def run(v, steps: int) -> float:
  state, ema = v["state"], v["ema"]
  start = time.perf_counter()
  key = jax.random.key(0)  # the step folds in its step count, as in train()
  for _ in range(steps):
    state, ema, metrics = v["fn"](state, ema, v["batch"], key, v["schedule"])
  jax.block_until_ready(metrics)
  v["state"], v["ema"] = state, ema
  return (time.perf_counter() - start) / steps


def main(argv):
  del argv
  config = _CONFIG.value
  if _BATCH.value:
    config.train.batch_size = _BATCH.value
  env = provenance.environment()
  shape = (
    f"batch {config.train.batch_size} x {config.data.num_frames} x "
    f"{config.data.image_size}^2, dtype {config.model.dtype}"
  )
  unknown = set(_VARIANTS.value) - set(VARIANTS)
  if unknown or not _VARIANTS.value:
    raise app.UsageError(
      f"--variants={','.join(_VARIANTS.value)}; expected some of {list(VARIANTS)}"
    )
  if "no_remat" not in _VARIANTS.value and not _COMPILE_ONLY.value:
    raise app.UsageError("--variants: a timed run needs no_remat (MFU counts its FLOPs)")
  variants = {name.replace("_", " "): build(config, VARIANTS[name]) for name in _VARIANTS.value}
  if _COMPILE_ONLY.value:
    print("compiled: " + ", ".join(f"{n} {v['compile_s']:.1f} s" for n, v in variants.items()))
    return
  for v in variants.values():
    run(v, 1)  # warm-up
  times = {name: [] for name in variants}
  for _ in range(_ROUNDS.value):
    for name, v in variants.items():
      times[name].append(run(v, _STEPS.value))
  model_flops = variants["no remat"]["flops"]
  peak = _PEAK.value * 1e12 * jax.device_count()
  base = float(np.median(times["no remat"]))
  rows = {}
  lines = [
    f"{provenance.describe(env)}; {shape}",
    f"{'variant':<10} {'step s':>8} {'vs no remat':>11} {'XLA TFLOP':>10} "
    f"{'temp GiB':>9} {'compile s':>9} {'MFU':>6}",
  ]
  profiles = []
  for name, v in variants.items():
    t = float(np.median(times[name]))
    mfu = model_flops / t / peak if peak else None
    rows[name] = dict(
      step_s=t,
      vs_no_remat=t / base,
      xla_flops=v["flops"],
      temp_gib=v["temp_gb"],
      compile_s=v["compile_s"],
      mfu=mfu,
    )
    lines.append(
      f"{name:<10} {t:8.4f} {t / base:11.2f} {v['flops'] / 1e12:10.3f} "
      f"{v['temp_gb']:9.2f} {v['compile_s']:9.1f} "
      f"{f'{mfu:6.1%}' if mfu is not None else '   n/a'}"
    )
    if _PROFILE.value:  # the step donates its state: each call feeds it its own outputs
      rows[name]["profile"] = op_profile.profile_calls(
        v["fn"].as_text(), lambda v=v: run(v, 1), calls=2
      )
      profiles += op_profile.format_profile(f"{name} step", rows[name]["profile"], t)
  lines += profiles
  result = dict(
    env,
    shape=shape,
    batch=config.train.batch_size,
    model_flops=model_flops,
    peak_tflops_per_device=_PEAK.value,
    rows=rows,
  )
  provenance.emit(result, "\n".join(lines), tag="TRAIN_THROUGHPUT", json_path=_JSON.value)


if __name__ == "__main__":
  app.run(main)
