"""Is the input pipeline fast enough to feed the train step? (A benchmark, not a test.)

  python -m benchmarks.input_pipeline [--config=configs/demo.py] [--steps=20]

Measures, in one process and one run: clips/s that the grain pipeline delivers for the
config's source, and clips/s that the jitted train step consumes (after a warm-up, so
compile time is reported apart). Prints the ratio: > 1 means the pipeline keeps up.
For the folder source it writes a temporary folder of mp4 clips first.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from benchmarks import provenance
from videofusion_jax import diffusion, parallel
from videofusion_jax.data import video_io
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.sources import make_source
from videofusion_jax.data.synthetic import SyntheticShapes
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.training.loop import create_state
from videofusion_jax.training.step import StepConfig, make_train_step

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py", "Experiment config.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed train steps and batches.")
_FOLDER = flags.DEFINE_bool(
  "folder",
  False,
  "Benchmark the video-folder source (mp4 decoding) instead of the config's source.",
)


def pipeline_rate(config, steps: int) -> float:
  it = iter(
    make_dataset(
      make_source(config.data, seed=0),
      global_batch_size=config.train.batch_size,
      seed=0,
      worker_count=config.data.worker_count,
    )
  )
  next(it)  # warm-up: thread start, first reads
  start = time.perf_counter()
  for _ in range(steps):
    next(it)
  return steps * config.train.batch_size / (time.perf_counter() - start)


def train_rate(config, steps: int) -> tuple[float, float]:
  spec = model_spec(config)
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  ts = create_state(spec, config, mesh, parallel.rules_from_config(config.mesh.rules))
  graphdef, state, ema = ts.graphdef, ts.state, ts.ema
  step_fn = make_train_step(graphdef, StepConfig(lam=spec.config.lam))
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  d = config.data
  batch = {
    "video": jnp.zeros(
      (config.train.batch_size, d.num_frames, d.image_size, d.image_size, d.channels)
    )
  }
  start = time.perf_counter()
  state, ema, m = step_fn(state, ema, batch, jax.random.key(0), schedule)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  for k in range(steps):
    state, ema, m = step_fn(state, ema, batch, jax.random.key(k), schedule)
  jax.block_until_ready(m)
  return steps * config.train.batch_size / (time.perf_counter() - start), compile_s


def main(argv):
  del argv
  config = _CONFIG.value
  with tempfile.TemporaryDirectory() as tmp:
    if _FOLDER.value:
      synth = SyntheticShapes(
        num_clips=64, num_frames=2 * config.data.num_frames, image_size=4 * config.data.image_size
      )
      for i in range(len(synth)):
        video_io.write_mp4(Path(tmp) / f"{i:03d}.mp4", video_io.to_uint8(synth[i]["video"]))
      config.data.source, config.data.path = "folder", tmp
    data = pipeline_rate(config, _STEPS.value)
  train, compile_s = train_rate(config, _STEPS.value)
  print(
    f"{provenance.hardware_line()}; source={config.data.source}, "
    f"batch={config.train.batch_size}, "
    f"clip={config.data.num_frames}x{config.data.image_size}^2"
  )
  print(f"train-step compile (apart): {compile_s:.1f} s")
  print(
    f"pipeline / train-step clips per second: {data / train:.1f}x "
    f"({data:.0f} vs {train:.1f} clips/s)"
  )


if __name__ == "__main__":
  app.run(main)
