"""Text (or class) -> CLIP image embeddings with a diffusion prior, before the video sampler.

  prior, schedule = load_prior(PATH)  # a train_prior workdir (EMA) or a converted folder
  image_embeds = sample_image_embeds(prior, text_embeds, text_hidden, mask,
                                     key=jax.random.key(0), guidance_scale=4.0,
                                     schedule=schedule)
  image_embeds = prompt_image_embeds(prior, schedule, load_clip(CLIP_DIR), ["a cat"],
                                     key=jax.random.key(0))   # CLIP text tower first

Classifier-free guidance runs the conditional and unconditional branches as one batched
model call per step (`diffusion.classifier_free_guidance`). The unconditional condition
is the prior's learned null (or null class) when it has one; otherwise pass `null_cond`,
the CLIP encoding of the empty text (what Karlo's pipeline does with its prior).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from videofusion_jax.diffusion import prior_diffusion
from videofusion_jax.diffusion.guidance import classifier_free_guidance
from videofusion_jax.diffusion.schedules import Schedule, make_schedule
from videofusion_jax.models.prior import PriorTransformer

SAMPLERS = ("ddim", "ddpm")


def prior_x0_fn(model: PriorTransformer):
  """-> x0_fn(z, t, cond) for a condition dict (text_embeds, text_hidden, text_mask,
  class_ids, drop)."""

  def x0_fn(z, t, cond):
    return model(
      z,
      t,
      cond.get("text_embeds"),
      cond.get("text_hidden"),
      cond.get("text_mask"),
      class_labels=cond.get("class_ids"),
      drop=cond.get("drop"),
    )

  return x0_fn


@functools.partial(
  jax.jit,
  static_argnames=("graphdef", "sampler", "num_steps", "eta", "clip_range", "guidance_scale"),
)
def _sample(
  graphdef, state, cond, null, key, schedule, *, sampler, num_steps, eta, clip_range, guidance_scale
):
  model = nnx.merge(graphdef, state)
  guided = classifier_free_guidance(
    lambda z, t, c: prior_x0_fn(model)(z, t, c), cond, null, guidance_scale
  )
  b = jax.tree.leaves(cond)[0].shape[0]
  shape = (b, model.config.embedding_dim)
  if sampler == "ddim":
    x0 = prior_diffusion.ddim_sample(
      guided, schedule, shape, key, num_steps=num_steps, eta=eta, clip_range=clip_range
    )
  else:
    x0 = prior_diffusion.ddpm_sample(guided, schedule, shape, key, clip_range=clip_range)
  return model.denormalise(x0)


def _batch(name, x, ndim, b=None):
  x = jnp.asarray(x)
  if x.ndim != ndim or (b is not None and x.shape[0] != b):
    raise ValueError(
      f"{name} has shape {x.shape}; expected {ndim} dims"
      + (f" with batch {b}" if b is not None else "")
    )
  return x


def sample_image_embeds(
  prior: PriorTransformer,
  text_embeds=None,
  text_hidden=None,
  mask=None,
  *,
  key,
  guidance_scale: float | None = 4.0,
  null_cond: dict | None = None,
  class_labels=None,
  schedule: Schedule | None = None,
  sampler: str = "ddim",
  num_steps: int = 25,
  eta: float = 0.0,
  clip_range: float | None = None,
  unconditional=None,
) -> jax.Array:
  """CLIP image embeddings (B, clip_embed_dim), un-normalised, for B conditions.

  text_embeds (B, Dp) CLIP text embeddings; text_hidden (B, L, D) and mask (B, L) bool
  for a prior with text tokens; class_labels (B,) for a class-conditioned prior. `key`:
  one key, or (B,) keys (one per embedding, independent of the batch). `null_cond`:
  {"text_embeds" (Dp,) or (1, Dp), "text_hidden" (L, D), "text_mask" (L,)}, the empty
  text's encoding, needed for guidance when the prior has no learned null. `schedule`
  defaults to cosine over 1000 steps (Karlo's prior). `unconditional` (B,) bool: rows
  sampled from the learned null / null class (empty prompts) whatever their condition.
  """
  c = prior.config
  if sampler not in SAMPLERS:
    raise ValueError(f"sampler={sampler!r}; expected one of {SAMPLERS}")
  if c.num_classes:
    if class_labels is None:
      raise ValueError(
        f"this prior is class-conditioned (num_classes={c.num_classes}); pass class_labels"
      )
    labels = _batch("class_labels", class_labels, 1).astype(jnp.int32)
    if int(jnp.max(labels)) >= c.num_classes or int(jnp.min(labels)) < 0:
      raise ValueError(f"class_labels {labels.tolist()} out of range 0..{c.num_classes - 1}")
    cond = {"class_ids": labels}
  else:
    if text_embeds is None:
      raise ValueError(f"text_embeds (B, {c.proj_dim}) are required")
    cond = {"text_embeds": _batch("text_embeds", text_embeds, 2)}
    b = cond["text_embeds"].shape[0]
    if c.uses_hidden_states:
      if text_hidden is None:
        raise ValueError(
          f"this prior reads text tokens: pass text_hidden (B, "
          f"{c.num_embeddings}, {c.embedding_dim}) and mask"
        )
      cond["text_hidden"] = _batch("text_hidden", text_hidden, 3, b)
      cond["text_mask"] = (
        jnp.ones(cond["text_hidden"].shape[:2], bool)
        if mask is None
        else _batch("mask", mask, 2, b).astype(bool)
      )
  b = jax.tree.leaves(cond)[0].shape[0]
  learned = c.num_classes or prior.null_proj_embedding is not None
  cond["drop"] = (
    jnp.zeros((b,), bool)
    if unconditional is None or not learned
    else _batch("unconditional", unconditional, 1, b).astype(bool)
  )
  if learned:
    null = dict(jax.tree.map(lambda x: x[:1], cond), drop=jnp.ones((1,), bool))
  elif guidance_scale is None or guidance_scale == 1.0:
    null = cond
  else:
    if null_cond is None:
      raise ValueError(
        "guidance needs the unconditional condition: this prior has no "
        "learned null, so pass null_cond (the CLIP encoding of the empty "
        "text), or guidance_scale=1"
      )
    null = {
      "text_embeds": jnp.asarray(null_cond["text_embeds"]).reshape(1, -1),
      "drop": jnp.ones((1,), bool),
    }
    if c.uses_hidden_states:
      hidden = jnp.asarray(null_cond["text_hidden"])
      null["text_hidden"] = hidden.reshape((1,) + hidden.shape[-2:])
      null["text_mask"] = (
        jnp.asarray(null_cond.get("text_mask", jnp.ones(hidden.shape[-2:-1], bool)))
        .reshape(1, -1)
        .astype(bool)
      )
  schedule = schedule if schedule is not None else make_schedule("cosine", 1000)
  graphdef, state = nnx.split(prior)
  return _sample(
    graphdef,
    state,
    cond,
    null,
    key,
    schedule,
    sampler=sampler,
    num_steps=int(num_steps),
    eta=float(eta),
    clip_range=None if clip_range is None else float(clip_range),
    guidance_scale=None if guidance_scale is None else float(guidance_scale),
  )


def encode_prompts(clip, prompts: Sequence[str]) -> tuple[dict, dict]:
  """Prompts -> (condition, empty-text condition) with a converted CLIP (`load_clip`).

  condition: text_embeds (B, D), text_hidden (B, L, W), text_mask (B, L) bool (tokens up to
  and including the first end-of-text, as the cache); the empty text: the same, unbatched.
  """
  tokenizer, text = clip.require("tokenizer"), clip.require("text")
  ids = np.asarray(tokenizer(list(prompts) + [""]))
  hidden, embeds = text(jnp.asarray(ids))
  mask = np.arange(ids.shape[1])[None, :] <= np.argmax(ids == tokenizer.eos_id, axis=1)[:, None]
  out = {
    "text_embeds": np.asarray(embeds, np.float32),
    "text_hidden": np.asarray(hidden, np.float32),
    "text_mask": mask,
  }
  return ({k: v[:-1] for k, v in out.items()}, {k: v[-1] for k, v in out.items()})


def prompt_image_embeds(
  prior: PriorTransformer,
  schedule: Schedule,
  clip,
  prompts: Sequence[str],
  *,
  key,
  guidance_scale: float | None = 4.0,
  **sample_kwargs,
) -> jax.Array:
  """CLIP image embeddings (B, D) for text prompts: CLIP text tower, then the prior.

  An empty prompt means unconditional (logged): the empty text's encoding, or the
  prior's learned null. The empty text is also guidance's unconditional input when the
  prior has no learned null (Karlo). `sample_kwargs` go to `sample_image_embeds`.
  """
  prompts = list(prompts)
  if not prompts:
    raise ValueError("prompts is empty; expected at least one prompt")
  empty = np.array([not p.strip() for p in prompts])
  if empty.any():
    logging.info("prompts %s are empty: sampled unconditionally", np.flatnonzero(empty))
  cond, null = encode_prompts(clip, [p.strip() for p in prompts])
  return sample_image_embeds(
    prior,
    cond["text_embeds"],
    cond["text_hidden"],
    cond["text_mask"],
    key=key,
    guidance_scale=guidance_scale,
    null_cond=null,
    schedule=schedule,
    unconditional=empty,
    **sample_kwargs,
  )


def load_prior(path: str | Path) -> tuple[PriorTransformer, Schedule]:
  """(prior with its EMA weights, its noise schedule) from a `train_prior` workdir or a
  folder written by `convert diffusers-prior` (cosine, T = 1000, as Karlo)."""
  from videofusion_jax.convert.diffusers_prior import (
    is_converted_prior,  # pylint: disable=import-outside-toplevel
    load_converted_prior,
  )

  if is_converted_prior(path):
    return load_converted_prior(path), make_schedule("cosine", 1000)
  from videofusion_jax.training.prior_loop import load_trained_prior  # pylint: disable=import-outside-toplevel

  return load_trained_prior(path)
