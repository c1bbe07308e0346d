"""What a benchmark of the train step needs, built as `train()` builds it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from videofusion_jax import diffusion, parallel
from videofusion_jax.models.from_config import ModelSpec, model_spec
from videofusion_jax.training.loop import TrainState, create_state, step_shardings
from videofusion_jax.training.step import StepShardings


@dataclasses.dataclass
class TrainSetup:
  spec: ModelSpec
  ts: TrainState  # the state and EMA, allocated on the config's mesh
  shardings: StepShardings
  batch: dict[str, Any]  # {"video": zeros} of the config's batch, placed
  schedule: diffusion.Schedule


def train_setup(config) -> TrainSetup:
  spec = model_spec(config)
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.rules_from_config(config.mesh.rules)
  ts = create_state(spec, config, mesh, rules)
  shardings = step_shardings(ts, config, mesh, rules)
  d = config.data
  video = np.zeros(
    (config.train.batch_size, d.num_frames, d.image_size, d.image_size, d.channels), np.float32
  )
  return TrainSetup(
    spec,
    ts,
    shardings,
    parallel.global_batch({"video": video}, shardings.batch),
    diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps),
  )
