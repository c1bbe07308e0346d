"""The training loop: `train(config, workdir)`, what `python -m videofusion_jax.train` runs.

Resumes from the latest checkpoint in WORKDIR (state, EMA, data position), saves every
`train.checkpoint_every` steps, at the end, and on SIGTERM (preemptible TPUs send it) or
a first Ctrl-C, writes metrics (TensorBoard, metrics.jsonl, a progress line) and EMA
sample videos.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from flax import nnx

from videofusion_jax import diffusion, parallel
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data.conditions import condition_inputs, conditioned_source
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.sources import make_source
from videofusion_jax.metric_writers import MetricWriter, ProgressLine
from videofusion_jax.models.from_config import ModelSpec, condition_of, model_spec
from videofusion_jax.sample_conditions import sample_conditions
from videofusion_jax.sampling import VideoSampler, sampler_config, write_samples
from videofusion_jax.training import init_from
from videofusion_jax.training.optimizer import learning_rate, make_optimizer
from videofusion_jax.training.preemption import Preemption
from videofusion_jax.training.step import (StateLeaves, StepConfig, StepShardings,
                                           make_train_step)


@dataclasses.dataclass
class TrainState:
  """What `create_state` gives the loop: graphdefs, sharded arrays and their layout."""
  graphdef: nnx.GraphDef          # of (model, optimizer)
  model_graphdef: nnx.GraphDef    # of the model alone (for sampling from the EMA)
  state: Any                      # nnx.State of (model, optimizer), or None when restoring
  ema: Any                        # EMA of the parameters, or None when restoring
  target: Any                     # (state, ema) as ShapeDtypeStructs with shardings
  shardings: Any                  # (state, ema) NamedShardings


def create_state(spec: ModelSpec, config: ml_collections.ConfigDict, mesh, rules,
                 *, allocate: bool = True) -> TrainState:
  """Model, optimizer and EMA created directly in their shardings on `mesh`.

  Shapes come first (`jax.eval_shape`), so `allocate=False` (a resume) only builds the
  restore target. On one device the arrays are created eagerly and then placed: with
  the persistent compilation cache that takes ~2 s on a CPU where tracing the whole
  init takes ~8 s; on a mesh one jitted init writes each shard where it belongs, so
  no device ever holds the whole model.
  """
  tx = make_optimizer(config.optim, config.train.num_steps)

  def build():
    model = spec.build(config.seed)
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

  def create():
    model, optimizer = build()
    # A copy, not a view: the train step donates the state and the EMA separately.
    ema = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    return nnx.state((model, optimizer)), ema

  abstract_model, abstract_opt = nnx.eval_shape(build)  # the only trace of the init
  graphdef = nnx.graphdef((abstract_model, abstract_opt))
  abstract = (nnx.state((abstract_model, abstract_opt)), nnx.state(abstract_model, nnx.Param))
  init, shardings, target = parallel.sharded_init(create, abstract, rules, mesh)
  state = ema = None
  if allocate:
    state, ema = jax.device_put(create(), shardings) if mesh.size == 1 else init()
    state, ema = init_from.apply(state, ema, spec.config, config.train)  # init_*_from
  return TrainState(graphdef, nnx.graphdef(abstract_model), state, ema, target, shardings)


def _check_train_config(config: ml_collections.ConfigDict) -> None:
  t = config.train
  for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
    if int(t[name]) < 1:
      raise ValueError(f"train.{name}={t[name]}; expected >= 1")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ValueError(f"train.ema_decay={t.ema_decay}; expected 0 <= ema_decay < 1")


def step_shardings(ts: TrainState, config: ml_collections.ConfigDict, mesh,
                   rules) -> StepShardings:
  """Where the train step's state, batch and (with `mesh.pin_activations`) the U-Nets'
  activations live on `mesh`."""
  pin = config.mesh.get("pin_activations", True)
  return StepShardings(
      state=ts.shardings[0], ema=ts.shardings[1],
      batch=parallel.batch_sharding(config.train.batch_size, rules, mesh),
      replicated=parallel.replicated(mesh),
      activations=parallel.activation_shardings(rules, mesh) if pin else None)


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Train (or resume) until `train.num_steps`; return the last logged metrics."""
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  _check_train_config(config)
  spec = model_spec(config)
  vf = spec.config
  cond = condition_of(vf)
  t = config.train
  workdir = Path(workdir)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.rules_from_config(config.mesh.rules)
  parallel.batch_size_check(t.batch_size, rules, mesh, "train.batch_size")
  source = conditioned_source(make_source(config.data, seed=config.seed), config.data, cond)
  dataset = make_dataset(source, global_batch_size=t.batch_size, seed=config.seed,
                         worker_count=config.data.worker_count)
  data_iter = iter(dataset)

  ckpt = Checkpoints(workdir, max_to_keep=t.max_checkpoints)
  start = ckpt.latest_step() or 0
  if start:
    ckpt.check_compatible(start, config)
  ts = create_state(spec, config, mesh, rules, allocate=not start)
  state, ema = ts.state, ts.ema
  if start:
    restored = ckpt.restore(start, state=ts.target[0], ema=ts.target[1], data_iter=data_iter)
    state, ema = restored["state"], restored["ema"]
    logging.info("Resumed from %s at step %d.", ckpt.directory, start)

  shardings = step_shardings(ts, config, mesh, rules)
  batch_sharding = shardings.batch
  # The loop carries the state and EMA as lists of arrays and rebuilds the trees only
  # to save or sample (StateLeaves: the trees cost host time at every call).
  layout = StateLeaves.of(state, ema)
  state_leaves, ema_leaves = layout.flatten(state, ema)
  del state, ema  # donated by the first step: only the leaves stay valid
  lr = learning_rate(config.optim, t.num_steps)
  step_fn = make_train_step(ts.graphdef, StepConfig(
      lam=vf.lam, noise_mode=config.diffusion.noise_mode,
      base_stop_gradient=t.base_stop_gradient, ema_decay=t.ema_decay,
      cond_drop_prob=t.get("cond_drop_prob", 0.0) if cond.enabled else 0.0), lr,
      shardings=shardings, leaves=layout)
  writer = MetricWriter(workdir, tensorboard=t.tensorboard)
  progress = ProgressLine(t.num_steps, start)
  sampler = None
  preemption = Preemption()
  train_key = jax.random.key(config.seed + 1)
  last = {}
  step = start
  try:
    while step < t.num_steps and not preemption.requested:
      batch = parallel.global_batch(condition_inputs(next(data_iter), cond), batch_sharding)
      state_leaves, ema_leaves, metrics = step_fn(state_leaves, ema_leaves, batch, train_key,
                                                  schedule)
      step += 1
      if step % t.log_every == 0 or step == t.num_steps:
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        rate = progress.update(step, last["loss"])
        writer.write(step, dict(last, steps_per_sec=rate))
      if step % t.checkpoint_every == 0:
        ckpt.save(step, *layout.unflatten(state_leaves, ema_leaves), data_iter, config)
      if t.sample_every and step % t.sample_every == 0:  # every process samples; 0 writes
        sampler = sampler or _make_sampler(ts.model_graphdef, vf, config, mesh, rules)
        _write_ema_samples(sampler, layout.ema.unflatten(ema_leaves), schedule, config,
                           workdir / "samples" / f"{step:07d}")
    if step > start and ckpt.latest_step() != step:
      ckpt.save(step, *layout.unflatten(state_leaves, ema_leaves), data_iter, config,
                force=True)
  finally:
    preemption.restore()
    ckpt.close()
    writer.close()
  return last


def outcome(workdir: str, num_steps: int, metrics: dict) -> str:
  """The line the CLI ends with: done, or stopped early (SIGTERM, Ctrl-C) and resumable."""
  summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
  summary = f": {summary}" if summary else ""  # empty when stopped before the first log
  ckpt = Checkpoints(workdir, read_only=True)
  try:
    step = ckpt.latest_step()
  finally:
    ckpt.close()
  if step is not None and step < num_steps:
    return (f"stopped at step {step} of {num_steps}, saved in {workdir} (the same command "
            f"resumes){summary}")
  return f"training done in {workdir}{summary}"


def _make_sampler(model_graphdef, vf, config, mesh, rules) -> VideoSampler:
  s = config.sample
  return VideoSampler(model_graphdef, vf, num_frames=config.data.num_frames,
                      image_size=config.data.image_size,
                      batch_size=min(s.batch_size, s.num_videos), config=sampler_config(config),
                      mesh=mesh, rules=rules)


def _write_ema_samples(sampler, ema, schedule, config, out_dir: Path):
  s = config.sample
  cond = sample_conditions(config, condition_of(model_spec(config).config), s.num_videos)
  batches = sampler.batches(ema, schedule, num_videos=s.num_videos, base_seed=s.base_seed,
                            residual_seed=s.residual_seed, cond=cond)
  paths = write_samples(batches, out_dir, fps=s.fps, image_size=config.data.image_size)
  logging.info("Wrote EMA samples to %s", paths[-1].parent)
