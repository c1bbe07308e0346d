"""What a video is conditioned on, turned into the U-Nets' two condition inputs.

The paper conditions both generators on the CLIP image embedding of the centre frame
(Sec 4.1), the way unCLIP decoders do: the embedding is added to the timestep
embedding (the U-Net's "projection" class embedding) and projected to `extra_tokens`
attention tokens (diffusers' `UnCLIPTextProjModel` makes 4 "clip extra context
tokens"). A class id works the same way through a learned table. CLIP text hidden
states, when given, are projected and appended to the tokens for cross-attention.

Classifier-free guidance needs the same network to be unconditional too: `drop` (B,)
bool replaces the condition of those clips with learned null values (a null row of the
class table, a null image embedding, zeroed text tokens). Training drops clips with
probability `train.cond_drop_prob`; the sampler's unconditional branch drops all.

Kind "unclip" is diffusers' `UnCLIPTextProjModel` (Karlo's `text_proj`), so a converted
unCLIP decoder runs as our base generator: the additive vector is
`embedding_proj(text_embeds) + image_time_proj(image_embed)`, of the base U-Net's time
embedding width (its class embedding is "identity"); the image embedding makes
`extra_tokens` tokens by a (B, D, K) reshape then transpose, exactly as diffusers does;
the text hidden states are projected and LayerNorm-ed and come after them, with
`text_mask` (padding False) extended by K True entries as `context_mask`. `drop`
replaces the image embedding by the learned null (diffusers'
`learned_classifier_free_guidance_embeddings`) and, when the condition carries
`null_text_embeds` / `null_text_hidden` (/ `null_text_mask`), the text inputs by those:
the empty prompt's encoding, the unconditional input of Karlo's pipeline. Training data
(data/conditions.py, from the CLIP cache) and the sampler (sampling/conditions.py) always
supply them; without them the text inputs are used as given (the caller has already put
the empty prompt's inputs in the dropped rows).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

KINDS = ("none", "class", "image_embed", "unclip")


@dataclasses.dataclass(frozen=True)
class ConditionConfig:
  """The `cond` section of an experiment config."""

  kind: str = "none"  # "class": ids in [0, num_classes); "image_embed": CLIP vectors
  num_classes: int = 0  # class ids for kind "class"
  embed_dim: int = 768  # CLIP image embedding size, or the class vectors' size
  extra_tokens: int = 4  # attention tokens made from the vector (0: additive only)
  text_dim: int = 0  # CLIP text hidden width for cross-attention tokens (0: none)
  # kind "unclip" only (diffusers UnCLIPTextProjModel): token width and additive width.
  context_dim: int = 0  # the tokens' width (cross_attention_dim); 0: embed_dim
  time_embed_dim: int = 0  # the additive vector's width: the base U-Net's time embedding

  @property
  def enabled(self) -> bool:
    return self.kind != "none"

  @property
  def token_dim(self) -> int | None:
    """The U-Nets' `cross_attention_dim`, or None when there are no tokens."""
    if self.enabled and (self.extra_tokens or self.text_dim):
      return self.context_dim or self.embed_dim
    return None

  def validate(self) -> None:
    if self.kind not in KINDS:
      raise ValueError(f"cond.kind={self.kind!r}; expected one of {KINDS}")
    if self.kind == "class" and self.num_classes < 1:
      raise ValueError(f"cond.num_classes={self.num_classes}; cond.kind='class' needs >= 1")
    for field in ("embed_dim", "extra_tokens", "text_dim"):
      if getattr(self, field) < 0 or (field == "embed_dim" and self.embed_dim < 1):
        raise ValueError(
          f"cond.{field}={getattr(self, field)}; expected a size >= "
          f"{1 if field == 'embed_dim' else 0}"
        )
    if self.text_dim and not self.enabled:
      raise ValueError(
        "cond.text_dim is set but cond.kind='none'; text tokens need "
        "kind 'class' or 'image_embed' (their null is the dropped vector)"
      )
    for field in ("context_dim", "time_embed_dim"):
      if getattr(self, field) < 0:
        raise ValueError(f"cond.{field}={getattr(self, field)}; expected a size >= 0")
    if self.kind == "unclip":
      if self.time_embed_dim < 1 or self.text_dim < 1:
        raise ValueError(
          f"cond.kind='unclip' needs cond.time_embed_dim (the base U-Net's "
          f"time embedding width) and cond.text_dim (CLIP text hidden width)"
          f" >= 1; got {self.time_embed_dim} and {self.text_dim}"
        )
    elif self.context_dim or self.time_embed_dim:
      raise ValueError(
        f"cond.context_dim / cond.time_embed_dim are for cond.kind='unclip';"
        f" cond.kind={self.kind!r} uses cond.embed_dim for both"
      )

  def input_names(self) -> tuple[str, ...]:
    """The entries of `cond` the model reads (besides the optional `drop`)."""
    if self.kind == "unclip":  # `text_mask` (B, L) bool is optional: all True
      return ("image_embed", "text_embeds", "text_hidden")
    names = {"none": (), "class": ("class_id",), "image_embed": ("image_embed",)}[self.kind]
    return names + (("text_hidden",) if self.text_dim else ())


def condition_config(config) -> ConditionConfig:
  """An experiment config's `cond` section (absent in older configs: unconditional)
  -> a ConditionConfig."""
  if "cond" not in config:
    return ConditionConfig()
  known = {f.name for f in dataclasses.fields(ConditionConfig)}
  unknown = sorted(set(config.cond) - known)
  if unknown:
    raise ValueError(f"cond.{unknown[0]} is not a conditioning field; expected {sorted(known)}")
  return ConditionConfig(**config.cond.to_dict())


class Condition(nnx.Module):
  """`cond` inputs -> `{"class_labels": (B, embed_dim), "context": (B, L, embed_dim)}`
  (kind "unclip": class_labels (B, time_embed_dim), context (B, K + L, context_dim) and
  context_mask (B, K + L))."""

  def __init__(self, config: ConditionConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    d = config.embed_dim
    width = config.token_dim or d
    if config.kind == "class":  # the last row is the null class
      self.class_table = nnx.Embed(config.num_classes + 1, d, rngs=rngs)
    else:
      self.null_embed = nnx.Param(jax.random.normal(rngs.params(), (d,)) * d**-0.5)
    if config.kind == "unclip":  # the additive vector: text and image embeddings projected
      self.embedding_proj = nnx.Linear(d, config.time_embed_dim, rngs=rngs)
      self.image_time_proj = nnx.Linear(d, config.time_embed_dim, rngs=rngs)
    self.extra_tokens = (
      nnx.Linear(d, config.extra_tokens * width, rngs=rngs) if config.extra_tokens else None
    )
    if config.text_dim:
      self.text_proj = nnx.Linear(config.text_dim, width, rngs=rngs)
      self.text_norm = nnx.LayerNorm(width, epsilon=1e-5, rngs=rngs)
    else:
      self.text_proj = self.text_norm = None

  def __call__(self, cond: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    cfg = self.config
    missing = [n for n in cfg.input_names() if n not in cond]
    if missing:
      raise ValueError(
        f"the model is conditioned (cond.kind={cfg.kind!r}) but the "
        f"condition lacks {missing}; it has {sorted(cond)}"
      )
    first = cond[cfg.input_names()[0]]
    b = first.shape[0]
    drop = jnp.asarray(cond.get("drop", jnp.zeros((b,), bool)), bool)
    if drop.shape != (b,):
      raise ValueError(f"cond['drop'] has shape {drop.shape}; expected ({b},)")
    if cfg.kind == "class":
      vector = self.class_table(jnp.where(drop, cfg.num_classes, first.astype(jnp.int32)))
    else:
      if first.shape[1:] != (cfg.embed_dim,):
        raise ValueError(
          f"cond['image_embed'] has shape {first.shape}; expected "
          f"(B, cond.embed_dim={cfg.embed_dim})"
        )
      vector = jnp.where(drop[:, None], self.null_embed[...].astype(first.dtype), first)
    if cfg.kind == "unclip":
      return self._unclip(vector, _null_text(cond, drop))
    out = {"class_labels": vector}
    tokens = []
    if self.extra_tokens is not None:  # (B, K * D) -> (B, K, D)
      tokens.append(self.extra_tokens(vector).reshape(b, cfg.extra_tokens, cfg.embed_dim))
    if self.text_proj is not None:
      text = self.text_norm(self.text_proj(cond["text_hidden"]))
      tokens.append(text * (1.0 - drop.astype(text.dtype))[:, None, None])
    if tokens:
      out["context"] = jnp.concatenate(tokens, axis=1)
    return out

  def _unclip(self, image_embed: jax.Array, cond: Mapping[str, jax.Array]) -> dict:
    """diffusers' UnCLIPTextProjModel.forward on the (null-substituted) image embedding."""
    cfg = self.config
    text_embeds, hidden = cond["text_embeds"], cond["text_hidden"]
    b = image_embed.shape[0]
    if text_embeds.shape != (b, cfg.embed_dim):
      raise ValueError(
        f"cond['text_embeds'] has shape {text_embeds.shape}; expected "
        f"({b}, cond.embed_dim={cfg.embed_dim})"
      )
    if hidden.ndim != 3 or hidden.shape[0] != b or hidden.shape[2] != cfg.text_dim:
      raise ValueError(
        f"cond['text_hidden'] has shape {hidden.shape}; expected "
        f"({b}, L, cond.text_dim={cfg.text_dim})"
      )
    mask = cond.get("text_mask")
    mask = jnp.ones(hidden.shape[:2], bool) if mask is None else jnp.asarray(mask, bool)
    if mask.shape != hidden.shape[:2]:
      raise ValueError(
        f"cond['text_mask'] has shape {mask.shape}; expected "
        f"{hidden.shape[:2]}, like text_hidden's first two axes"
      )
    additive = self.image_time_proj(image_embed) + self.embedding_proj(text_embeds)
    tokens = [self.text_norm(self.text_proj(hidden))]
    masks = [mask]
    if self.extra_tokens is not None:  # (B, K * D) -> (B, D, K) -> (B, K, D), as diffusers
      k = cfg.extra_tokens
      extra = self.extra_tokens(image_embed).reshape(b, -1, k).transpose(0, 2, 1)
      tokens.insert(0, extra)
      masks.insert(0, jnp.ones((b, k), bool))
    return {
      "class_labels": additive,
      "context": jnp.concatenate(tokens, axis=1),
      "context_mask": jnp.concatenate(masks, axis=1),
    }


UNCLIP_NULL_TEXT = {
  "null_text_embeds": "text_embeds",
  "null_text_hidden": "text_hidden",
  "null_text_mask": "text_mask",
}


def _null_text(cond: Mapping[str, jax.Array], drop: jax.Array) -> dict:
  """`cond` whose text inputs are the `null_text_*` entries in the dropped rows."""
  given = [n for n in UNCLIP_NULL_TEXT if n in cond]
  if not given:
    return dict(cond)
  if "null_text_embeds" not in given or "null_text_hidden" not in given:
    raise ValueError(
      f"cond has {given} but not both null_text_embeds and null_text_hidden"
      " (the empty prompt's CLIP text embedding and hidden states)"
    )
  out = dict(cond)
  for null_name, name in UNCLIP_NULL_TEXT.items():
    if null_name not in cond:
      continue
    value = cond.get(name)
    if value is None:  # text_mask is optional: all True
      value = jnp.ones(cond["text_hidden"].shape[:2], bool)
    null = jnp.asarray(cond[null_name]).astype(value.dtype)
    if null.shape != value.shape:
      raise ValueError(
        f"cond[{null_name!r}] has shape {null.shape}; expected {value.shape}, like cond[{name!r}]"
      )
    out[name] = jnp.where(drop.reshape((-1,) + (1,) * (value.ndim - 1)), null, value)
  return out
