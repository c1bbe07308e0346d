"""The training loop: `train(config, workdir)`, what `python -m videofusion_jax.train` runs.

Resumes from the latest checkpoint in WORKDIR (state, EMA, data position), saves every
`train.checkpoint_every` steps, at the end, and on SIGTERM (preemptible TPUs send it) or
a first Ctrl-C, writes metrics (TensorBoard, metrics.jsonl, a progress line) and EMA
sample videos.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from flax import nnx

from videofusion_jax import diffusion, parallel, storage
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.data.conditions import condition_inputs, conditioned_source
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.sources import make_source
from videofusion_jax.metric_writers import MetricWriter
from videofusion_jax.models.from_config import ModelSpec, condition_of, model_spec
from videofusion_jax.progress import Progress
from videofusion_jax.sampling.conditions import sample_conditions
from videofusion_jax.sampling.generate import VideoSampler, sampler_config, write_samples
from videofusion_jax.training import init_from
from videofusion_jax.training.config_checks import check_config, check_shared_workdir
from videofusion_jax.training.nonfinite import NonFiniteSteps
from videofusion_jax.training.optimizer import learning_rate, make_optimizer
from videofusion_jax.training.parameter_table import log_parameter_tables
from videofusion_jax.training.preemption import Preemption, check_preemption_service
from videofusion_jax.training.step import StateLeaves, StepShardings, make_train_step, step_config


@dataclasses.dataclass
class TrainState:
  """What `create_state` gives the loop: graphdefs, sharded arrays and their layout."""

  graphdef: nnx.GraphDef  # of (model, optimizer)
  model_graphdef: nnx.GraphDef  # of the model alone (for sampling from the EMA)
  state: Any  # nnx.State of (model, optimizer), or None when restoring
  ema: Any  # EMA of the parameters, or None when restoring
  target: Any  # (state, ema) as ShapeDtypeStructs with shardings
  shardings: Any  # (state, ema) NamedShardings
  allocate: Callable[[], tuple]  # -> a new run's (state, ema), in their shardings


def create_state(
  spec: ModelSpec, config: ml_collections.ConfigDict, mesh, rules, *, allocate: bool = True
) -> TrainState:
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

  def allocate_state():
    state, ema = jax.device_put(create(), shardings) if mesh.size == 1 else init()
    return init_from.apply(state, ema, spec.config, config.train)  # init_*_from

  state, ema = allocate_state() if allocate else (None, None)
  return TrainState(
    graphdef, nnx.graphdef(abstract_model), state, ema, target, shardings, allocate_state
  )


def step_shardings(ts: TrainState, config: ml_collections.ConfigDict, mesh, rules) -> StepShardings:
  """Where the train step's state, batch and (with `mesh.pin_activations`) the U-Nets'
  activations live on `mesh`."""
  pin = config.mesh.pin_activations
  return StepShardings(
    state=ts.shardings[0],
    ema=ts.shardings[1],
    batch=parallel.batch_sharding(config.train.batch_size, rules, mesh),
    replicated=parallel.replicated(mesh),
    activations=parallel.activation_shardings(rules, mesh) if pin else None,
  )


def train(
  config: ml_collections.ConfigDict, workdir: str, *, preemption: Preemption | None = None
) -> dict[str, float]:
  """Train (or resume) until `train.num_steps`; return the last logged metrics.

  Stops early, after saving, on SIGTERM or a first Ctrl-C (`outcome` tells; pass a
  `Preemption` to learn which signal it was: the CLI's exit code differs). Raises
  `cli.ConfigError` for a bad config or data before anything is written, `Diverged`
  after `train.max_nonfinite_steps` consecutive non-finite steps (each skipped; the
  checkpoints keep the last finite state), and `CheckpointError` for a checkpoint
  folder that is not writable or holds no step that restores.
  """
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  spec = check_config(config)
  storage.check_reachable(workdir, "--workdir")  # gs://: no bucket, no credentials
  t = config.train
  check_shared_workdir(workdir, t, jax.process_count())
  check_preemption_service()
  with _as_config_errors():
    mesh = parallel.make_mesh(config.mesh)
    rules = parallel.rules_from_config(config.mesh.rules)
    parallel.batch_size_check(t.batch_size, rules, mesh, "train.batch_size")
    source = conditioned_source(
      make_source(config.data, seed=config.seed), config.data, condition_of(spec.config)
    )
    dataset = make_dataset(
      source,
      global_batch_size=t.batch_size,
      seed=config.seed,
      worker_count=config.data.worker_count,
    )
  data_iter = iter(dataset)
  workdir = storage.path(workdir)
  first_batch = None
  if not _has_checkpoints(workdir):
    # A new run reads its first batch before it creates the workdir: a data folder of
    # only unreadable files then leaves nothing behind.
    with _as_config_errors():
      first_batch = next(data_iter)
  ckpt = Checkpoints(workdir, max_to_keep=t.max_checkpoints)
  try:
    ts = create_state(spec, config, mesh, rules, allocate=False)
    log_parameter_tables(ts.target[1], workdir)  # the EMA's target: the parameters
    start, restored = ckpt.restore_newest_intact(
      config, state=ts.target[0], ema=ts.target[1], data_iter=data_iter
    )
    if start is None:
      start, restored = 0, dict(zip(("state", "ema"), ts.allocate()))
    else:
      logging.info("Resumed from %s at step %d.", ckpt.directory, start)
    return _run_steps(
      spec,
      config,
      workdir,
      ckpt,
      ts,
      mesh,
      rules,
      data_iter,
      restored["state"],
      restored["ema"],
      start,
      first_batch,
      preemption,
    )
  finally:
    ckpt.close()


@contextlib.contextmanager
def _as_config_errors():
  """Errors of the config's data or mesh sections, found before anything is written."""
  try:
    yield
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from None


def _has_checkpoints(workdir: Path) -> bool:
  with Checkpoints(workdir, read_only=True) as reader:
    return bool(reader.all_steps())


def _run_steps(
  spec,
  config,
  workdir,
  ckpt,
  ts,
  mesh,
  rules,
  data_iter,
  state,
  ema,
  start: int,
  first_batch,
  preemption: Preemption | None,
) -> dict[str, float]:
  """The loop itself, from step `start` (state and EMA in place on the mesh)."""
  t = config.train
  vf = spec.config
  cond = condition_of(vf)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  shardings = step_shardings(ts, config, mesh, rules)
  # The loop carries the state and EMA as lists of arrays and rebuilds the trees only
  # to save or sample (StateLeaves: the trees cost host time at every call).
  layout = StateLeaves.of(state, ema)
  state_leaves, ema_leaves = layout.flatten(state, ema)
  del state, ema  # donated by the first step: only the leaves stay valid
  step_fn = make_train_step(
    ts.graphdef,
    step_config(config, vf),
    learning_rate(config.optim, t.num_steps),
    shardings=shardings,
    leaves=layout,
  )
  writer = MetricWriter(workdir, tensorboard=t.tensorboard, resume_step=start)
  progress = Progress("train", t.num_steps, initial=start)
  nonfinite = NonFiniteSteps(t.max_nonfinite_steps, start)
  sampler = None
  own_preemption = preemption is None
  preemption = preemption or Preemption()
  if jax.process_count() > 1:  # stop where every process stops (preemption.py)
    preemption.agree_across_processes()
  train_key = jax.random.key(config.seed + 1)
  last = {}
  step = saved = start
  logging.info(
    "Compiling the train step: the first step takes a while (minutes for a "
    "large model; the persistent compilation cache makes it seconds next time)."
  )

  def save(force=False):
    """Save, except periodically while the latest steps are skipped as non-finite: the
    state that led there may be what diverged, and retention would delete an older,
    good checkpoint for it. The save at the end or at SIGTERM is made all the same (the
    state is finite: skipped steps never change it)."""
    nonlocal saved
    counts = nonfinite.check(_last_good(ckpt, saved))
    if counts["run"] and not force:
      logging.warning("Not saving step %d: the last %d steps were non-finite.", step, counts["run"])
      return
    ckpt.save(step, *layout.unflatten(state_leaves, ema_leaves), data_iter, config, force=force)
    saved = step
    writer.flush()  # metrics on a gs:// workdir at least as new as its checkpoints

  try:
    while step < t.num_steps and not preemption.stop_at(step):
      batch = first_batch if first_batch is not None else next(data_iter)
      first_batch = None
      batch = parallel.global_batch(condition_inputs(batch, cond), shardings.batch)
      state_leaves, ema_leaves, metrics = step_fn(
        state_leaves, ema_leaves, batch, train_key, schedule
      )
      nonfinite.record(metrics["nonfinite"])
      step += 1
      if step % t.log_every == 0 or step == t.num_steps:
        counts = nonfinite.check(_last_good(ckpt, saved))
        last = {k: float(v) for k, v in jax.device_get(metrics).items() if k != "nonfinite"}
        last["nonfinite_steps"] = float(counts["total"])
        rate = progress.update(step, note=f"loss {last['loss']:.4f}")
        writer.write(step, dict(last, steps_per_sec=rate))
      if step % t.checkpoint_every == 0:
        save()
      if t.sample_every and step % t.sample_every == 0:  # every process samples; 0 writes
        sampler = sampler or _make_sampler(ts.model_graphdef, vf, config, mesh, rules)
        _write_ema_samples(
          sampler,
          layout.ema.unflatten(ema_leaves),
          schedule,
          config,
          workdir / "samples" / f"{step:07d}",
        )
    if step > start and ckpt.latest_step() != step:
      save(force=True)
  finally:
    progress.close()
    if own_preemption:
      preemption.restore()
    writer.close()
  return last


def _last_good(ckpt: Checkpoints, saved: int) -> str:
  if not saved:
    return "No checkpoint was written."
  return f"The last good checkpoint is step {saved} in {ckpt.directory}."


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How a run ended: the line the CLI prints, and whether it stopped before the end."""

  line: str
  stopped_early: bool


def outcome(workdir: str, num_steps: int, metrics: dict) -> Outcome:
  """Done, or stopped early (SIGTERM, Ctrl-C) and resumable."""
  summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
  summary = f": {summary}" if summary else ""  # empty when stopped before the first log
  with Checkpoints(workdir, read_only=True) as ckpt:
    step = ckpt.latest_step()
  if step is not None and step < num_steps:
    return Outcome(
      f"stopped at step {step} of {num_steps}, saved in {workdir} (the same "
      f"command resumes){summary}",
      stopped_early=True,
    )
  return Outcome(f"training done in {workdir}{summary}", stopped_early=False)


def _make_sampler(model_graphdef, vf, config, mesh, rules) -> VideoSampler:
  s = config.sample
  return VideoSampler(
    model_graphdef,
    vf,
    num_frames=config.data.num_frames,
    image_size=config.data.image_size,
    batch_size=min(s.batch_size, s.num_videos),
    config=sampler_config(config),
    mesh=mesh,
    rules=rules,
  )


def _write_ema_samples(sampler, ema, schedule, config, out_dir: Path):
  s = config.sample
  cond = sample_conditions(config, condition_of(model_spec(config).config), s.num_videos)
  batches = sampler.batches(
    ema,
    schedule,
    num_videos=s.num_videos,
    base_seed=s.base_seed,
    residual_seed=s.residual_seed,
    cond=cond,
  )
  paths = write_samples(batches, out_dir, fps=s.fps, image_size=config.data.image_size)
  logging.info("Wrote EMA samples to %s", paths[-1].parent)
