"""What one sharded train step sends between devices, activations pinned vs not.
(A benchmark, not a test: counts from the compiled programs, nothing is run.)

  python -m benchmarks.step_communication                        # 8 fake CPU devices
  python -m benchmarks.step_communication --cpu_devices=0 --meshes=1x1x8 \
      --config=configs/ucf101.py --config.train.batch_size=32     # the real devices

For each mesh (data x fsdp x tensor) the step is compiled twice in one process, with
`mesh.pin_activations` on and off (`models/logical_axes.constrain`), and the
collectives of each partitioned program are counted (`tools/collectives.py`): array
elements each device receives, by kind, and the largest single all-to-all. No step is
executed, so a model too large to run here can still be partitioned and counted.
A 3-axis mesh (all of data, fsdp, tensor > 1) switches the process to GSPMD, where
nothing is pinned (parallel.activation_shardings), so put it last.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import provenance
from videofusion_jax import diffusion, parallel
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.tools.collectives import collectives
from videofusion_jax.training.loop import create_state, step_shardings
from videofusion_jax.training.step import StepConfig, make_train_step

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Experiment config.")
_MESHES = flags.DEFINE_list(
  "meshes", ["8x1x1", "2x4x1", "2x1x4", "1x2x4", "2x2x2"], "data x fsdp x tensor meshes, in order."
)
_CPU_DEVICES = flags.DEFINE_integer(
  "cpu_devices", 8, "Fake CPU devices to partition over (0: the real ones)."
)
_FRAMES = flags.DEFINE_integer("frames", 4, "Frames per clip.")
_SIZE = flags.DEFINE_integer("size", 16, "Frame size.")
_BATCH = flags.DEFINE_integer("batch", 8, "Global batch.")


def compile_step(config, mesh_shape, pin: bool):
  """(collectives, compile seconds) of the train step on a data x fsdp x tensor mesh."""
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
  config.mesh.pin_activations = pin
  devices = jax.devices("cpu") if _CPU_DEVICES.value else jax.devices()
  mesh = parallel.make_mesh(config.mesh, devices)
  rules = parallel.rules_from_config(config.mesh.rules)
  spec = model_spec(config)
  ts = create_state(spec, config, mesh, rules, allocate=False)
  shardings = step_shardings(ts, config, mesh, rules)
  step = make_train_step(ts.graphdef, StepConfig(lam=spec.config.lam), shardings=shardings)
  d = config.data
  video = jax.ShapeDtypeStruct(
    (config.train.batch_size, d.num_frames, d.image_size, d.image_size, d.channels),
    np.float32,
    sharding=shardings.batch,
  )
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  start = time.perf_counter()
  compiled = step.lower(*ts.target, {"video": video}, jax.random.key(0), schedule).compile()
  return collectives(compiled.as_text()), time.perf_counter() - start


def main(argv):
  del argv
  if _CPU_DEVICES.value:  # before anything touches a device
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  config = _CONFIG.value
  config.data.num_frames, config.data.image_size = _FRAMES.value, _SIZE.value
  config.train.batch_size = _BATCH.value
  devices = jax.devices("cpu") if _CPU_DEVICES.value else jax.devices()
  print(
    f"{provenance.hardware_line(devices)}; batch {_BATCH.value} x "
    f"{_FRAMES.value} x {_SIZE.value}^2; elements received per device per step"
  )
  kinds = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
  print(
    f"| mesh | partitioner | pinned | {' | '.join(kinds)} | total | pinned / not | "
    f"largest all-to-all | compile s |"
  )
  print("|---" * (len(kinds) + 7) + "|")
  for name in _MESHES.value:
    shape = tuple(int(x) for x in name.split("x"))
    rows = {pin: compile_step(config, shape, pin) for pin in (False, True)}
    partitioner = "shardy" if jax.config.jax_use_shardy_partitioner else "gspmd"
    for pin, (sent, compile_s) in rows.items():
      by_kind = sent.elements_by_kind()
      largest = sent.largest("all-to-all")
      ratio = sent.elements / max(rows[False][0].elements, 1)
      print(
        f"| {name} | {partitioner} | {'yes' if pin else 'no'} | "
        + " | ".join(f"{by_kind.get(k, 0):,}" for k in kinds)
        + f" | {sent.elements:,} | {ratio:.2f} | {largest:,} | {compile_s:.1f} |"
      )
    sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
