"""Training the diffusion prior: `train_prior(config, workdir)` (`python -m
videofusion_jax.train_prior`).

Batches of (image, text) CLIP embeddings from the npz cache (or a synthetic set), the
x0 loss on image embeddings normalised by the data's per-dimension mean/std (stored in
the model as clip_mean/clip_std), text-condition dropout with probability
`train.cond_drop_prob` for classifier-free guidance (the learned null, the null class,
or the cache's empty-text encoding), AdamW, an EMA of the parameters, and orbax
checkpoints with resume (`checkpoint.Checkpoints`). Batch k is drawn from
`seed + k`, so a resumed run continues with the batches it would have seen.
Single-device: the prior is small next to the video generators.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from videofusion_jax import storage
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.diffusion import prior_diffusion
from videofusion_jax.diffusion.schedules import Schedule, make_schedule
from videofusion_jax.metric_writers import MetricWriter
from videofusion_jax.models.prior import PriorConfig, PriorStat, PriorTransformer
from videofusion_jax.progress import Progress
from videofusion_jax.training.optimizer import make_optimizer
from videofusion_jax.training.preemption import Preemption
from videofusion_jax.training.prior_data import PriorData, read_clip_cache, synthetic_prior_data
from videofusion_jax.training.step import StateLeaves, ema_decay_at, ema_update

PRIOR_FIELDS = tuple(f.name for f in dataclasses.fields(PriorConfig))


def prior_config(config: ml_collections.ConfigDict) -> PriorConfig:
  """config.model -> a validated PriorConfig; unknown fields are named."""
  model = config.model.to_dict()
  unknown = sorted(set(model) - set(PRIOR_FIELDS) - {"kind"})
  if unknown:
    raise ConfigError(f"model has unknown prior field(s) {unknown}; known: {PRIOR_FIELDS}")
  return PriorConfig(**{k: v for k, v in model.items() if k in PRIOR_FIELDS}).validate()


def load_data(config: ml_collections.ConfigDict) -> PriorData:
  d = config.data
  if d.source == "synthetic":
    m = config.model
    return synthetic_prior_data(
      d.num_examples,
      m.embedding_dim,
      num_tokens=m.num_embeddings,
      num_classes=m.num_classes,
      seed=config.seed,
    )
  if d.source == "clip_cache":
    return read_clip_cache(d.clip_cache)
  raise ConfigError(f"data.source={d.source!r}; expected 'clip_cache' or 'synthetic'")


def check_data(pc: PriorConfig, data: PriorData, config: ml_collections.ConfigDict) -> None:
  """The cache's arrays fit the prior's config, else a ValueError naming both."""
  src = f"data ({config.data.source} {config.data.clip_cache})"

  def need(cond, msg):
    if not cond:
      raise ConfigError(f"{src}: {msg}")

  need(
    data.image_embeds.shape[1] == pc.embedding_dim == pc.out_dim,
    f"image_embeds are {data.image_embeds.shape[1]}-d; model.embedding_dim="
    f"{pc.embedding_dim} and clip_embed_dim={pc.out_dim} must match them",
  )
  if pc.num_classes:
    need(data.class_ids is not None, f"model.num_classes={pc.num_classes} needs class_ids")
    need(
      0 <= data.class_ids.min() and data.class_ids.max() < pc.num_classes,
      f"class_ids span {data.class_ids.min()}..{data.class_ids.max()}; expected "
      f"0..{pc.num_classes - 1}",
    )
    return
  need(
    data.text_embeds is not None and data.text_embeds.shape[1] == pc.proj_dim,
    f"text_embeds {None if data.text_embeds is None else data.text_embeds.shape}; "
    f"expected (K, {pc.proj_dim}) (model.embedding_proj_dim)",
  )
  if pc.uses_hidden_states:
    need(
      data.text_hidden is not None,
      "model.encoder_hid_proj_type='linear' needs text_hidden in the cache (or set "
      "model.encoder_hid_proj_type=None and model.num_embeddings=0)",
    )
    need(
      data.text_hidden.shape[1:] == (pc.num_embeddings, pc.embedding_dim),
      f"text_hidden is {data.text_hidden.shape}; expected (K, {pc.num_embeddings}, "
      f"{pc.embedding_dim}) (model.num_embeddings, model.embedding_dim)",
    )
  if config.train.cond_drop_prob > 0 and not pc.learned_null:
    need(
      data.null is not None and ("text_hidden" in data.null or not pc.uses_hidden_states),
      "train.cond_drop_prob > 0 without model.learned_null needs the empty text's "
      "encoding (null_text_embeds, null_text_hidden) in the cache",
    )


def _build(pc: PriorConfig, config, stats=None):
  model = PriorTransformer(pc, rngs=nnx.Rngs(config.seed))
  if stats is not None:
    model.clip_mean[...] = jnp.asarray(stats[0])
    model.clip_std[...] = jnp.asarray(stats[1])
  tx = make_optimizer(config.optim, config.train.num_steps, base_and_residual=False)
  return model, nnx.Optimizer(model, tx, wrt=nnx.Param)


def _abstract(pc, config):
  """(graphdef of (model, opt), model graphdef, restore targets (state, ema))."""
  model, opt = nnx.eval_shape(lambda: _build(pc, config))
  return (
    nnx.graphdef((model, opt)),
    nnx.graphdef(model),
    (nnx.state((model, opt)), nnx.state(model, nnx.Param)),
  )


@functools.lru_cache(maxsize=8)
def make_prior_step(graphdef, layout: StateLeaves, cond_drop_prob: float, ema_decay: float):
  """-> jitted step(state, ema, batch, null, key, schedule) -> (state, ema, metrics), the
  state and EMA as `layout`'s lists; `key` is the run's (the step folds in its count).

  Cached per (graphdef, layout, settings): a resumed run in the same process reuses the
  compile.
  """

  def step(state, ema, batch, null, key, schedule):
    model, opt = nnx.merge(graphdef, state)
    count = opt.step[...]
    drop_key, loss_key, dropout_key = jax.random.split(jax.random.fold_in(key, count), 3)
    b = batch["image_embeds"].shape[0]
    drop = jax.random.bernoulli(drop_key, cond_drop_prob, (b,))
    cond = {k: v for k, v in batch.items() if k != "image_embeds"}
    if null:  # the empty text's encoding replaces the dropped rows
      for k, v in null.items():
        d = drop.reshape((b,) + (1,) * (cond[k].ndim - 1))
        cond[k] = jnp.where(d, v[None], cond[k])
    else:  # the model's learned null / null class
      cond["drop"] = drop

    def loss_fn(model):
      x0 = model.normalise(batch["image_embeds"])
      fn = lambda z, t: model(
        z,
        t,
        cond.get("text_embeds"),
        cond.get("text_hidden"),
        cond.get("text_mask"),
        class_labels=cond.get("class_ids"),
        drop=cond.get("drop"),
        rngs=nnx.Rngs(dropout=dropout_key),
      )
      return prior_diffusion.x0_loss(fn, x0, loss_key, schedule)

    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    opt.update(model, grads)
    ema = ema_update(ema, nnx.state(model, nnx.Param), ema_decay_at(count, ema_decay))
    return nnx.state((model, opt)), ema, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

  return jax.jit(layout.over_leaves(step), donate_argnums=(0, 1))


def _schedule(config) -> Schedule:
  return make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)


def _batch_indices(num: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  return np.random.RandomState([seed, step]).randint(0, num, size=batch_size)


def train_prior(
  config: ml_collections.ConfigDict, workdir: str, *, preemption: Preemption | None = None
) -> dict[str, float]:
  """Train (or resume) the prior until `train.num_steps`; return the last metrics.

  `preemption`: the caller's signal flag (the CLI reads which signal stopped the run);
  by default one of its own, for the length of the call.
  """
  pc = prior_config(config)
  t = config.train
  for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
    if int(t[name]) < 1:
      raise ConfigError(f"train.{name}={t[name]}; expected >= 1")
  if not 0.0 <= t.cond_drop_prob < 1.0:
    raise ConfigError(f"train.cond_drop_prob={t.cond_drop_prob}; expected 0 <= p < 1")
  data = load_data(config)
  check_data(pc, data, config)
  null = (
    {}
    if pc.learned_null or pc.num_classes or t.cond_drop_prob == 0
    else {
      k: jnp.asarray(v) for k, v in data.null.items() if k == "text_embeds" or pc.uses_hidden_states
    }
  )
  schedule = _schedule(config)
  storage.check_reachable(workdir, "--workdir")  # gs://: no bucket, no credentials
  workdir = storage.path(workdir)
  ckpt = Checkpoints(workdir, max_to_keep=t.max_checkpoints)
  start = ckpt.latest_step() or 0
  graphdef, _, target = _abstract(pc, config)
  if start:
    ckpt.check_compatible(start, config)
    restored = ckpt.restore(start, state=target[0], ema=target[1])
    state, ema = restored["state"], restored["ema"]
    logging.info("Resumed the prior from %s at step %d.", ckpt.directory, start)
  else:
    model, opt = _build(pc, config, data.stats())
    state = nnx.state((model, opt))
    ema = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
  layout = StateLeaves.of(state, ema)  # the loop carries lists (training/step.py)
  state_leaves, ema_leaves = layout.flatten(state, ema)
  del state, ema  # donated by the first step
  step_fn = make_prior_step(graphdef, layout, float(t.cond_drop_prob), float(t.ema_decay))
  # Lines past the restored step (a run killed after logging them) are cut back.
  writer = MetricWriter(workdir, tensorboard=t.tensorboard, resume_step=start)
  progress = Progress("train prior", t.num_steps, initial=start)
  own_preemption = preemption is None
  preemption = preemption or Preemption()
  key = jax.random.key(config.seed + 1)
  last, step = {}, start
  try:
    while step < t.num_steps and not preemption.requested:
      batch = data.batch(_batch_indices(len(data), t.batch_size, config.seed, step))
      state_leaves, ema_leaves, metrics = step_fn(
        state_leaves, ema_leaves, batch, null, key, schedule
      )
      step += 1
      if step % t.log_every == 0 or step == t.num_steps:
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        rate = progress.update(step, note=f"loss {last['loss']:.4f}")
        writer.write(step, dict(last, steps_per_sec=rate))
      if step % t.checkpoint_every == 0:
        ckpt.save(step, *layout.unflatten(state_leaves, ema_leaves), None, config)
    if step > start and ckpt.latest_step() != step:
      ckpt.save(step, *layout.unflatten(state_leaves, ema_leaves), None, config, force=True)
  finally:
    progress.close()
    if own_preemption:
      preemption.restore()
    ckpt.close()
    writer.close()
  return last


def load_trained_prior(workdir: str | Path) -> tuple[PriorTransformer, Schedule]:
  """(prior with the EMA parameters and the data statistics, schedule) of a workdir."""
  with Checkpoints(workdir, read_only=True) as ckpt:
    step = ckpt.latest_step_or_raise(
      "train a prior there with `python -m videofusion_jax.train_prior "
      f"--workdir={workdir}` or convert one (`python -m videofusion_jax.convert "
      "diffusers-prior`)"
    )
    config = ml_collections.ConfigDict(ckpt.saved_config(step))
    pc = prior_config(config)
    graphdef, model_graphdef, target = _abstract(pc, config)
    restored = ckpt.restore(step, state=target[0], ema=target[1])
  trained, _ = nnx.merge(graphdef, restored["state"])
  model = nnx.merge(model_graphdef, restored["ema"], nnx.state(trained, PriorStat))
  return model, _schedule(config)
