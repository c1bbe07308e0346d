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
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

KINDS = ("none", "class", "image_embed")


@dataclasses.dataclass(frozen=True)
class ConditionConfig:
  """The `cond` section of an experiment config."""
  kind: str = "none"        # "class": ids in [0, num_classes); "image_embed": CLIP vectors
  num_classes: int = 0      # class ids for kind "class"
  embed_dim: int = 768      # CLIP image embedding size, or the class vectors' size
  extra_tokens: int = 4     # attention tokens made from the vector (0: additive only)
  text_dim: int = 0         # CLIP text hidden width for cross-attention tokens (0: none)

  @property
  def enabled(self) -> bool:
    return self.kind != "none"

  @property
  def token_dim(self) -> int | None:
    """The U-Nets' `cross_attention_dim`, or None when there are no tokens."""
    if self.enabled and (self.extra_tokens or self.text_dim):
      return self.embed_dim
    return None

  def validate(self) -> None:
    if self.kind not in KINDS:
      raise ValueError(f"cond.kind={self.kind!r}; expected one of {KINDS}")
    if self.kind == "class" and self.num_classes < 1:
      raise ValueError(f"cond.num_classes={self.num_classes}; cond.kind='class' needs >= 1")
    for field in ("embed_dim", "extra_tokens", "text_dim"):
      if getattr(self, field) < 0 or (field == "embed_dim" and self.embed_dim < 1):
        raise ValueError(f"cond.{field}={getattr(self, field)}; expected a size >= "
                         f"{1 if field == 'embed_dim' else 0}")
    if self.text_dim and not self.enabled:
      raise ValueError("cond.text_dim is set but cond.kind='none'; text tokens need "
                       "kind 'class' or 'image_embed' (their null is the dropped vector)")

  def input_names(self) -> tuple[str, ...]:
    """The entries of `cond` the model reads (besides the optional `drop`)."""
    names = {"none": (), "class": ("class_id",), "image_embed": ("image_embed",)}[self.kind]
    return names + (("text_hidden",) if self.text_dim else ())


class Condition(nnx.Module):
  """`cond` inputs -> `{"class_labels": (B, embed_dim), "context": (B, L, embed_dim)}`."""

  def __init__(self, config: ConditionConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    d = config.embed_dim
    if config.kind == "class":  # the last row is the null class
      self.class_table = nnx.Embed(config.num_classes + 1, d, rngs=rngs)
    else:
      self.null_embed = nnx.Param(jax.random.normal(rngs.params(), (d,)) * d ** -0.5)
    self.extra_tokens = (nnx.Linear(d, config.extra_tokens * d, rngs=rngs)
                         if config.extra_tokens else None)
    if config.text_dim:
      self.text_proj = nnx.Linear(config.text_dim, d, rngs=rngs)
      self.text_norm = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
    else:
      self.text_proj = self.text_norm = None

  def __call__(self, cond: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    cfg = self.config
    missing = [n for n in cfg.input_names() if n not in cond]
    if missing:
      raise ValueError(f"the model is conditioned (cond.kind={cfg.kind!r}) but the "
                       f"condition lacks {missing}; it has {sorted(cond)}")
    first = cond[cfg.input_names()[0]]
    b = first.shape[0]
    drop = jnp.asarray(cond.get("drop", jnp.zeros((b,), bool)), bool)
    if drop.shape != (b,):
      raise ValueError(f"cond['drop'] has shape {drop.shape}; expected ({b},)")
    if cfg.kind == "class":
      vector = self.class_table(jnp.where(drop, cfg.num_classes, first.astype(jnp.int32)))
    else:
      if first.shape[1:] != (cfg.embed_dim,):
        raise ValueError(f"cond['image_embed'] has shape {first.shape}; expected "
                         f"(B, cond.embed_dim={cfg.embed_dim})")
      vector = jnp.where(drop[:, None], self.null_embed[...].astype(first.dtype), first)
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
