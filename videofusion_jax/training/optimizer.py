"""AdamW with warmup, clipping, and a smaller (or zero) learning rate for the base generator.

The one optimizer factory of the project: the video models and the diffusion prior
(`training/prior_loop.py`) both build theirs here.

The base generator is a pretrained image model in the paper: it is fine-tuned with a
smaller learning rate (`optim.base_lr_scale`) or frozen (`optim.freeze_base`, Table 7's
"fixed" ablation). Parameters are told apart by the first entry of their path: the
sub-module `base`, or anything else. A label per path rather than per module type keeps
the split working for every model kind and for converted weights alike.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

SCHEDULES = ("constant", "cosine")


def learning_rate(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup to `optim.lr`, then constant or cosine decay to 0 at `total_steps`."""
  if optim.schedule not in SCHEDULES:
    raise ValueError(f"optim.schedule={optim.schedule!r}; expected one of {SCHEDULES}")
  if optim.lr <= 0:
    raise ValueError(f"optim.lr={optim.lr}; expected > 0")
  warmup = max(0, int(optim.warmup_steps))
  if optim.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, optim.lr, warmup, max(total_steps, warmup + 1))
  return optax.join_schedules(
    [optax.linear_schedule(0.0, optim.lr, max(warmup, 1)), optax.constant_schedule(optim.lr)],
    [warmup],
  )


def _adamw(lr, optim):
  return optax.adamw(lr, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay)


def param_labels(params):
  """'base' for the base generator's parameters, 'residual' for all others (the
  residual generator, the condition embeddings, other model kinds' networks): those
  are new, trained at the full learning rate."""
  return jax.tree_util.tree_map_with_path(
    lambda path, _: "base" if str(path[0].key) == "base" else "residual", params
  )


def make_optimizer(
  optim: ml_collections.ConfigDict, total_steps: int, *, base_and_residual: bool = True
) -> optax.GradientTransformation:
  """Clipping, then AdamW on `learning_rate`'s schedule.

  `base_and_residual`: the video models' split (the base generator at
  `optim.base_lr_scale`, or frozen); False for models without a base generator (the
  prior), whose optimizer state is then a plain AdamW's, as its checkpoints hold.
  """
  lr = learning_rate(optim, total_steps)
  clip = optax.clip_by_global_norm(optim.grad_clip) if optim.grad_clip else optax.identity()
  if not base_and_residual:
    return optax.chain(clip, _adamw(lr, optim))
  if not 0.0 <= optim.base_lr_scale:
    raise ValueError(f"optim.base_lr_scale={optim.base_lr_scale}; expected >= 0")
  base = (
    optax.set_to_zero()
    if optim.freeze_base
    else _adamw(lambda step: lr(step) * optim.base_lr_scale, optim)
  )
  return optax.chain(
    clip, optax.multi_transform({"base": base, "residual": _adamw(lr, optim)}, param_labels)
  )
