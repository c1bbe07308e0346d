"""The train step's optimizer and EMA rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from videofusion_jax.training.optimizer import learning_rate, make_optimizer
from videofusion_jax.training.step import ema_decay_at, ema_update


def test_ema_warms_up_then_holds_the_configured_decay():
  np.testing.assert_allclose(float(ema_decay_at(0, 0.999)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(ema_decay_at(90, 0.999)), 91 / 100)
  assert float(ema_decay_at(10**6, 0.999)) == np.float32(0.999)
  ema = ema_update({"w": jnp.zeros(3)}, {"w": jnp.ones(3)}, 0.75)
  np.testing.assert_allclose(ema["w"], 0.25)


def _optim(**changes):
  c = ConfigDict(
    dict(
      lr=1e-2,
      schedule="constant",
      warmup_steps=0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      weight_decay=0.0,
      grad_clip=0.0,
      base_lr_scale=0.1,
      freeze_base=False,
    )
  )
  c.update(changes)
  return c


def _optimizer(**changes):
  return make_optimizer(_optim(**changes), total_steps=10)


def test_base_moves_less_or_not_at_all():
  params = {"base": {"w": jnp.ones(4)}, "residual": {"w": jnp.ones(4)}}
  grads = jax.tree.map(jnp.ones_like, params)
  for changes, ratio in (({}, 0.1), ({"freeze_base": True}, 0.0)):
    tx = _optimizer(**changes)
    updates, _ = tx.update(grads, tx.init(params), params)
    moved = optax.apply_updates(params, updates)
    d_base = float(jnp.abs(moved["base"]["w"] - 1).max())
    d_res = float(jnp.abs(moved["residual"]["w"] - 1).max())
    np.testing.assert_allclose(d_base, ratio * d_res, rtol=1e-5)


def test_without_the_split_every_parameter_moves_alike_with_a_plain_adamw_state():
  """The prior's optimizer: no base generator, so no per-path split; its state keeps the
  layout of `chain(clip, adamw)` that prior checkpoints hold."""
  params = {"base": {"w": jnp.ones(4)}, "layers": {"w": jnp.ones(4)}}
  grads = jax.tree.map(jnp.ones_like, params)
  optim = _optim(grad_clip=1.0)
  tx = make_optimizer(optim, total_steps=10, base_and_residual=False)
  state = tx.init(params)
  plain = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(learning_rate(optim, 10), b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0),
  )
  assert jax.tree.structure(state) == jax.tree.structure(plain.init(params))
  moved = optax.apply_updates(params, tx.update(grads, state, params)[0])
  np.testing.assert_array_equal(moved["base"]["w"], moved["layers"]["w"])
  assert float(jnp.abs(moved["base"]["w"] - 1).max()) > 0


def _tiny_model_state():
  """A one-level VideoFusion, its (model, optimizer) state and EMA, and their layout."""
  import dataclasses

  from flax import nnx

  from videofusion_jax.models.unet import UNetConfig
  from videofusion_jax.models.videofusion import VideoFusion, VideoFusionConfig
  from videofusion_jax.training.step import StateLeaves

  unet = UNetConfig(
    block_out_channels=(16,),
    layers_per_block=1,
    attention_levels=(),
    mid_block_attention=False,
    norm_num_groups=8,
  )
  model = VideoFusion(
    VideoFusionConfig(
      base=unet, residual=dataclasses.replace(unet, temporal="attention", attention_head_dim=8)
    ),
    rngs=nnx.Rngs(0),
  )
  graphdef, state = nnx.split((model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)))
  ema = nnx.state(model, nnx.Param)
  return graphdef, state, ema, StateLeaves.of(state, ema)


def _copy(tree):  # each step donates its inputs
  return jax.tree.map(jnp.copy, tree)


def test_the_step_over_leaf_lists_is_the_step_over_trees():
  """What the training loop runs (state and EMA as lists of arrays, `StateLeaves`) gives
  bit for bit the states, EMA and metrics of the step over nnx.State trees."""
  from videofusion_jax import diffusion
  from videofusion_jax.training.step import StepConfig, make_train_step

  graphdef, state, ema, layout = _tiny_model_state()
  schedule = diffusion.make_schedule("cosine", 100)
  video = jax.random.uniform(jax.random.key(1), (2, 3, 8, 8, 3), minval=-1, maxval=1)
  tree_step = make_train_step(graphdef, StepConfig(ema_decay=0.9))
  leaf_step = make_train_step(graphdef, StepConfig(ema_decay=0.9), leaves=layout)
  trees = (_copy(state), _copy(ema))
  leaves = layout.flatten(_copy(state), _copy(ema))
  for k in range(2):
    *trees, tree_metrics = tree_step(*trees, {"video": video}, jax.random.key(k), schedule)
    *leaves, leaf_metrics = leaf_step(*leaves, {"video": video}, jax.random.key(k), schedule)
    assert jax.tree.map(float, tree_metrics) == jax.tree.map(float, leaf_metrics)
  assert float(tree_metrics["loss"]) > 0
  rebuilt = layout.unflatten(*leaves)
  assert jax.tree.structure(rebuilt) == jax.tree.structure(tuple(trees))
  for got, want in zip(jax.tree.leaves(rebuilt), jax.tree.leaves(trees)):
    np.testing.assert_array_equal(got, want)
  assert not np.allclose(jax.tree.leaves(rebuilt[1])[0], jax.tree.leaves(ema)[0])  # it trained


def test_a_non_finite_step_is_skipped_on_the_device():
  """A NaN in the batch makes the loss and gradients NaN: the step reports it and leaves
  the parameters, Adam's moments and step count and the EMA bit for bit as they were; a
  finite batch after it trains as usual."""
  from videofusion_jax import diffusion
  from videofusion_jax.training.step import StepConfig, make_train_step

  graphdef, state, ema, layout = _tiny_model_state()
  step = make_train_step(graphdef, StepConfig(ema_decay=0.9), leaves=layout)
  schedule = diffusion.make_schedule("cosine", 100)
  video = jax.random.uniform(jax.random.key(1), (2, 3, 8, 8, 3), minval=-1, maxval=1)
  start = [np.asarray(x) for x in jax.tree.leaves((state, ema))]
  poisoned = video.at[0, 1, 2, 3, 0].set(jnp.nan)
  *leaves, metrics = step(
    *layout.flatten(_copy(state), _copy(ema)), {"video": poisoned}, jax.random.key(0), schedule
  )
  assert bool(metrics["nonfinite"]) and not np.isfinite(float(metrics["loss"]))
  for got, want in zip(jax.tree.leaves(leaves), start):
    np.testing.assert_array_equal(got, want)
  *leaves, metrics = step(*leaves, {"video": video}, jax.random.key(0), schedule)
  assert not bool(metrics["nonfinite"]) and np.isfinite(float(metrics["loss"]))
  changed = [not np.array_equal(got, want) for got, want in zip(jax.tree.leaves(leaves), start)]
  assert sum(changed) > len(changed) // 2  # parameters, moments, count and EMA moved
