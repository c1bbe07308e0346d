"""The train step: a pure, jitted function of (state, ema, batch, key).

`state` is `nnx.state((model, optimizer))`, `ema` the exponential moving average of the
model's parameters (a separate tree, updated inside the step; `optax.ema` would average
updates, not parameters). The state and EMA are donated, so a step updates in place.
The training loop passes them as lists of arrays (`StateLeaves`): nnx.State is
flattened and rebuilt in Python at every call, which for a small model costs more host
time than the device spends on the step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.diffusion.noise_sharing import training_noise
from videofusion_jax.models.from_config import condition_of
from videofusion_jax.models.logical_axes import with_activation_sharding
from videofusion_jax.models.videofusion import needs_centre_frame


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the train step; `step_config` reads them from an experiment
  config, whose defaults (configs/base.py) these are."""

  lam: float = 0.5
  noise_mode: str = "decomposed"  # "standard": independent noise (VDM baseline)
  base_stop_gradient: bool = True  # False: Table 7's "w/o stop gradient" ablation
  ema_decay: float = 0.9999
  # Clips whose condition is dropped (guidance); train.cond_drop_prob for conditioned models.
  cond_drop_prob: float = 0.0


def step_config(config: ml_collections.ConfigDict, model_config) -> StepConfig:
  """The train step's settings from an experiment config and the model's config (its
  `lam`, and whether it is conditioned: only then are conditions dropped)."""
  t = config.train
  return StepConfig(
    lam=model_config.lam,
    noise_mode=config.diffusion.noise_mode,
    base_stop_gradient=t.base_stop_gradient,
    ema_decay=t.ema_decay,
    cond_drop_prob=t.cond_drop_prob if condition_of(model_config).enabled else 0.0,
  )


def ema_decay_at(step, decay: float):
  """min(decay, (1 + step) / (10 + step)): a short run's EMA does not keep a share of the
  random initial weights (0.995 ** 600 = 5% of them after 600 steps without this)."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema: nnx.State, params: nnx.State, decay) -> nnx.State:
  return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def loss_fn(
  model,
  video: jax.Array,
  key: jax.Array,
  schedule: diffusion.Schedule,
  config: StepConfig,
  cond=None,
  groups=None,
):
  """Eq. 14 on one batch: noise at random timesteps, denoise, MSE against the noise.

  groups: None, or (identity_ids, action_ids) (B,) each (Weizmann batches): the base
  noise is then shared by clips of one identity, the residual by clips of one action.
  """
  b = video.shape[0]
  t_key, base_key, residual_key, dropout_key = jax.random.split(key, 4)
  t = jax.random.randint(t_key, (b,), 0, schedule.num_timesteps)
  eps = training_noise(config.noise_mode, base_key, residual_key, video.shape, config.lam, groups)
  z_t = diffusion.q_sample(video, t, eps, schedule.alphas_cumprod)
  if cond is not None and config.cond_drop_prob > 0:  # own key: other draws unchanged
    drop = jax.random.bernoulli(jax.random.fold_in(key, 5), config.cond_drop_prob, (b,))
    cond = dict(cond, drop=drop)
  extra = {}
  if needs_centre_frame(model):  # the residual generator's context
    extra["centre_frame"] = video[:, diffusion.centre_index(video.shape[1])]
  out = model.in_compute_dtype()(
    z_t,
    t,
    schedule.alphas_cumprod,
    cond=cond,
    stop_base_grad=config.base_stop_gradient,
    rngs=nnx.Rngs(dropout=dropout_key),
    **extra,
  )
  losses = diffusion.decomposed_loss(eps, out.eps.astype(eps.dtype))
  return losses["loss"], losses


def keep_if_finite(finite: jax.Array, updated, before: list) -> Any:
  """`updated` where `finite`, else the tree of `before`'s arrays (the same structure).

  A step whose loss or gradient norm is not finite is skipped on the device: the
  parameters, the optimizer's moments and step count, and the EMA stay as they were, so
  nothing non-finite reaches a checkpoint and the loop needs no host sync per step to
  notice (`training/nonfinite.py` counts the skipped steps). `before` is taken as leaves
  before `nnx.merge`, whose Variables the optimizer's update then overwrites.
  """
  leaves, treedef = jax.tree.flatten(updated)
  assert len(leaves) == len(before), (len(leaves), len(before))
  return treedef.unflatten([jnp.where(finite, new, old) for new, old in zip(leaves, before)])


@dataclasses.dataclass(frozen=True)
class StateLeaves:
  """How the (state, ema) trees flatten, for a loop that carries their arrays as lists.

  A jitted call flattens its nnx.State arguments and rebuilds its nnx.State results in
  Python, a few microseconds an array: for the demo model's state, optimizer and EMA
  (1,525 arrays) a train step that returns its inputs unchanged costs 25.2 ms of host
  time on a 2-core CPU, and 4.3 ms given the same arrays as lists
  (benchmarks/RESULTS.md; the retired script: `git show 54c214f:benchmarks/step_dispatch.py`).
  The trees are rebuilt only to save or sample.
  """

  state: Any  # jax.tree_util.PyTreeDef of the (model, optimizer) state
  ema: Any  # ... of the EMA parameters

  @classmethod
  def of(cls, state, ema) -> "StateLeaves":
    """From the trees, or from anything with their structure (shapes, shardings)."""
    return cls(jax.tree.structure(state), jax.tree.structure(ema))

  def flatten(self, state, ema) -> tuple[list, list]:
    return self.state.flatten_up_to(state), self.ema.flatten_up_to(ema)

  def unflatten(self, state_leaves, ema_leaves) -> tuple[Any, Any]:
    return self.state.unflatten(state_leaves), self.ema.unflatten(ema_leaves)

  def over_leaves(self, step: Callable) -> Callable:
    """`step(state, ema, *rest) -> (state, ema, out)` taking and giving their leaves."""

    @functools.wraps(step)  # a jitted program keeps the step's name
    def leaf_step(state_leaves, ema_leaves, *rest):
      state, ema, out = step(*self.unflatten(state_leaves, ema_leaves), *rest)
      return (*self.flatten(state, ema), out)

    return leaf_step


@dataclasses.dataclass(frozen=True)
class StepShardings:
  """Where the train step's inputs and outputs live on the mesh (`parallel.py`)."""

  state: Any  # tree of NamedShardings like the (model, opt) state
  ema: Any  # ... like the parameters
  batch: jax.sharding.Sharding  # every batch entry: leading axis over the data axes
  replicated: jax.sharding.Sharding  # keys, the schedule, the metrics
  # parallel.activation_shardings: pins the U-Nets' activations while the step is traced
  activations: Callable | None = None

  def jit_kwargs(self, leaves: StateLeaves | None = None) -> dict:
    """`jax.jit`'s in/out shardings for `(state, ema, batch, key, schedule) -> (state,
    ema, metrics)`, the state and EMA as `leaves`' lists when given."""
    state, ema = (self.state, self.ema) if leaves is None else leaves.flatten(self.state, self.ema)
    return dict(
      in_shardings=(state, ema, self.batch, self.replicated, self.replicated),
      out_shardings=(state, ema, self.replicated),
    )


def make_train_step(
  graphdef: nnx.GraphDef,
  config: StepConfig,
  learning_rate: Callable | None = None,
  *,
  shardings: StepShardings | None = None,
  leaves: StateLeaves | None = None,
) -> Callable:
  """-> jitted `train_step(state, ema, batch, key, schedule) -> (state, ema, metrics)`.

  `key` is the run's: the step folds in the optimizer's step count, so a loop passes
  the same key every step (one host-side `fold_in` less per step) and a resumed run
  draws what the uninterrupted one would have.

  With `shardings`, inputs and outputs are pinned to them (the state stays where
  `parallel.sharded_init` put it, step after step); without, jit follows the inputs.
  With `leaves`, the state and EMA go in and come out as `leaves.flatten` lists.
  """

  def train_step(state, ema, batch, key, schedule):
    before = jax.tree.leaves((state, ema))  # arrays: what a skipped update keeps
    model, optimizer = nnx.merge(graphdef, state)
    step = optimizer.step[...]
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    groups = (batch["identity"], batch["action"]) if "identity" in batch else None
    (_, metrics), grads = grad_fn(
      model,
      batch["video"],
      jax.random.fold_in(key, step),
      schedule,
      config,
      batch.get("cond"),
      groups,
    )
    optimizer.update(model, grads)
    ema = ema_update(ema, nnx.state(model, nnx.Param), ema_decay_at(step, config.ema_decay))
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
    state, ema = keep_if_finite(finite, (nnx.state((model, optimizer)), ema), before)
    metrics = dict(metrics, grad_norm=grad_norm, nonfinite=jnp.logical_not(finite))
    if learning_rate is not None:
      metrics["lr"] = jnp.asarray(learning_rate(step), jnp.float32)
    return state, ema, metrics

  step_fn = train_step if leaves is None else leaves.over_leaves(train_step)

  if shardings is None:
    return jax.jit(step_fn, donate_argnums=(0, 1))
  return jax.jit(
    with_activation_sharding(step_fn, shardings.activations),
    donate_argnums=(0, 1),
    **shardings.jit_kwargs(leaves),
  )
