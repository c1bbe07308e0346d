"""The unCLIP diffusion prior (DALL-E 2, Karlo): text condition -> CLIP image embedding.

A causal transformer over the tokens [text hidden states (L), projected text embedding,
timestep embedding, noisy image embedding, a learned "prd" query token] whose last token
reads out the predicted *clean* image embedding (x0 objective, as Karlo's prior). The
image embedding lives normalised by per-dimension `clip_mean`/`clip_std` statistics
(`normalise`/`denormalise`). Attribute names equal diffusers' `PriorTransformer`
(`time_embedding.linear_1`, `transformer_blocks.0.attn1.to_q`, `ff.net.0.proj`, ...), so
converting a Karlo/Kandinsky prior is a table (convert/diffusers_prior.py).

Beyond diffusers: `num_classes > 0` swaps the text embedding for a class-id embedding
(the last id is the null class), and `learned_null` adds a learned unconditional
condition (text embedding and hidden states) used where `drop` is True, for condition
dropout and classifier-free guidance. Without it, the unconditional condition is data:
the CLIP encoding of the empty text, as Karlo's pipeline does.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax.models.attention import multi_head_attention
from videofusion_jax.models.layers import timestep_embedding

MASK_VALUE = -10000.0  # diffusers' additive mask value (not -inf): parity near masks
ACTIVATIONS = {"silu": nnx.silu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


class PriorStat(nnx.Variable):
  """Data statistics (clip_mean/clip_std): saved with the model, never optimised."""


@dataclasses.dataclass(frozen=True)
class PriorConfig:
  """diffusers `PriorTransformer` fields (same names and defaults: Karlo's prior) + ours."""

  num_attention_heads: int = 32
  attention_head_dim: int = 64
  num_layers: int = 20
  embedding_dim: int = 768  # CLIP embedding size (and text hidden width)
  num_embeddings: int = 77  # text tokens; 0 without encoder hidden states
  additional_embeddings: int = 4  # proj embedding, time, image embedding, prd
  dropout: float = 0.0
  time_embed_act_fn: str = "silu"
  norm_in_type: str | None = None  # None or "layer"
  embedding_proj_norm_type: str | None = None  # None or "layer"
  encoder_hid_proj_type: str | None = "linear"  # None: condition on the embedding only
  added_emb_type: str | None = "prd"
  time_embed_dim: int | None = None  # None: heads * head_dim
  embedding_proj_dim: int | None = None  # None: embedding_dim
  clip_embed_dim: int | None = None  # None: embedding_dim
  # Ours (not in diffusers checkpoints):
  num_classes: int = 0  # > 0: class-id conditioning instead of text
  learned_null: bool = False  # learned unconditional condition (CFG dropout)
  norm_eps: float = 1e-5

  @property
  def inner_dim(self) -> int:
    return self.num_attention_heads * self.attention_head_dim

  @property
  def proj_dim(self) -> int:
    return self.embedding_proj_dim or self.embedding_dim

  @property
  def out_dim(self) -> int:
    return self.clip_embed_dim or self.embedding_dim

  @property
  def uses_hidden_states(self) -> bool:
    return self.encoder_hid_proj_type is not None

  def validate(self) -> "PriorConfig":
    def bad(field, expected):
      raise ValueError(f"model.{field}={getattr(self, field)!r}; expected {expected}")

    for f in ("num_attention_heads", "attention_head_dim", "num_layers", "embedding_dim"):
      if int(getattr(self, f)) < 1:
        bad(f, ">= 1")
    if self.time_embed_act_fn not in ACTIVATIONS:
      bad("time_embed_act_fn", f"one of {sorted(ACTIVATIONS)}")
    for f in ("norm_in_type", "embedding_proj_norm_type"):
      if getattr(self, f) not in (None, "layer"):
        bad(f, "None or 'layer'")
    if self.encoder_hid_proj_type not in (None, "linear"):
      bad("encoder_hid_proj_type", "None or 'linear'")
    if self.added_emb_type != "prd":
      bad("added_emb_type", "'prd' (the read-out token; None, Shap-E's layout, is not supported)")
    if self.additional_embeddings != 4:
      bad("additional_embeddings", "4 (proj embedding, time, image embedding, prd)")
    if self.uses_hidden_states and self.num_embeddings < 1:
      bad("num_embeddings", ">= 1 text tokens with encoder_hid_proj_type='linear'")
    if not self.uses_hidden_states and self.num_embeddings != 0:
      bad("num_embeddings", "0 with encoder_hid_proj_type=None (no text tokens)")
    if self.num_classes < 0:
      bad("num_classes", ">= 0")
    if self.num_classes and self.uses_hidden_states:
      bad(
        "encoder_hid_proj_type", "None with num_classes > 0 (class conditioning has no text tokens)"
      )
    if not 0.0 <= self.dropout < 1.0:
      bad("dropout", "0 <= dropout < 1")
    return self


def _layer_norm(dim: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, rngs=rngs)


class TimestepEmbedding(nnx.Module):
  """diffusers `TimestepEmbedding(in, time_embed_dim, out_dim=in, act_fn)`."""

  def __init__(self, dim: int, hidden: int, act: str, *, rngs: nnx.Rngs):
    self.linear_1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.linear_2 = nnx.Linear(hidden, dim, rngs=rngs)
    self.act = act

  def __call__(self, x):
    return self.linear_2(ACTIVATIONS[self.act](self.linear_1(x)))


class SelfAttention(nnx.Module):
  """diffusers `Attention` as `BasicTransformerBlock.attn1` builds it (biases, no norm)."""

  def __init__(self, dim: int, heads: int, *, dropout: float, rngs: nnx.Rngs):
    self.heads = heads
    self.to_q = nnx.Linear(dim, dim, rngs=rngs)
    self.to_k = nnx.Linear(dim, dim, rngs=rngs)
    self.to_v = nnx.Linear(dim, dim, rngs=rngs)
    self.to_out = nnx.Linear(dim, dim, rngs=rngs)  # torch: to_out.0
    self.dropout = nnx.Dropout(dropout)

  def __call__(self, x, bias, rngs=None):
    """x (B, T, C); bias (B, 1, T, T) additive -> (B, T, C)."""
    out = multi_head_attention(self.to_q(x), self.to_k(x), self.to_v(x), self.heads, bias)
    return self.dropout(self.to_out(out), deterministic=rngs is None, rngs=rngs)


class GELUProj(nnx.Module):
  """diffusers `GELU` (exact): a Linear then gelu."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.proj = nnx.Linear(dim, hidden, rngs=rngs)

  def __call__(self, x):
    return jax.nn.gelu(self.proj(x), approximate=False)


class FeedForward(nnx.Module):
  """diffusers `FeedForward(dim, activation_fn="gelu")`: net = [GELU, Dropout, Linear]."""

  def __init__(self, dim: int, *, dropout: float, rngs: nnx.Rngs):
    self.net = nnx.List(
      [GELUProj(dim, 4 * dim, rngs=rngs), nnx.Dropout(dropout), nnx.Linear(4 * dim, dim, rngs=rngs)]
    )

  def __call__(self, x, rngs=None):
    h = self.net[1](self.net[0](x), deterministic=rngs is None, rngs=rngs)
    return self.net[2](h)


class BasicTransformerBlock(nnx.Module):
  """Pre-norm self-attention + feed-forward (diffusers, no cross-attention): norm1, attn1,
  norm3, ff."""

  def __init__(self, dim: int, heads: int, *, dropout: float, eps: float, rngs: nnx.Rngs):
    self.norm1 = _layer_norm(dim, eps, rngs)
    self.attn1 = SelfAttention(dim, heads, dropout=dropout, rngs=rngs)
    self.norm3 = _layer_norm(dim, eps, rngs)
    self.ff = FeedForward(dim, dropout=dropout, rngs=rngs)

  def __call__(self, x, bias, rngs=None):
    x = x + self.attn1(self.norm1(x), bias, rngs)
    return x + self.ff(self.norm3(x), rngs)


class PriorTransformer(nnx.Module):
  """x_t (B, D) normalised noisy image embedding -> x0_hat (B, D), normalised."""

  def __init__(self, config: PriorConfig, *, rngs: nnx.Rngs):
    c = self.config = config.validate()
    d = c.inner_dim
    self.time_embedding = TimestepEmbedding(
      d, c.time_embed_dim or d, c.time_embed_act_fn, rngs=rngs
    )
    self.proj_in = nnx.Linear(c.embedding_dim, d, rngs=rngs)
    self.embedding_proj_norm = (
      _layer_norm(c.proj_dim, c.norm_eps, rngs) if c.embedding_proj_norm_type else None
    )
    self.embedding_proj = nnx.Linear(c.proj_dim, d, rngs=rngs)
    self.encoder_hidden_states_proj = (
      nnx.Linear(c.embedding_dim, d, rngs=rngs) if c.uses_hidden_states else None
    )
    seq = c.num_embeddings + c.additional_embeddings
    # diffusers initialises these at zero; small random values train as well and make a
    # random model's tokens distinguishable (the parity tests load torch's values).
    init = nnx.initializers.normal(0.02)
    self.positional_embedding = nnx.Param(init(rngs.params(), (1, seq, d)))
    self.prd_embedding = nnx.Param(init(rngs.params(), (1, 1, d)))
    self.transformer_blocks = nnx.List(
      [
        BasicTransformerBlock(
          d, c.num_attention_heads, dropout=c.dropout, eps=c.norm_eps, rngs=rngs
        )
        for _ in range(c.num_layers)
      ]
    )
    self.norm_in = _layer_norm(d, c.norm_eps, rngs) if c.norm_in_type else None
    self.norm_out = _layer_norm(d, c.norm_eps, rngs)
    self.proj_to_clip_embeddings = nnx.Linear(d, c.out_dim, rngs=rngs)
    self.clip_mean = PriorStat(jnp.zeros((1, c.out_dim), jnp.float32))
    self.clip_std = PriorStat(jnp.ones((1, c.out_dim), jnp.float32))
    self.class_embedding = (
      nnx.Embed(c.num_classes + 1, c.proj_dim, rngs=rngs) if c.num_classes else None
    )
    if c.learned_null and not c.num_classes:  # the class null id plays this role
      self.null_proj_embedding = nnx.Param(init(rngs.params(), (1, c.proj_dim)))
      self.null_encoder_hidden_states = (
        nnx.Param(init(rngs.params(), (1, c.num_embeddings, c.embedding_dim)))
        if c.uses_hidden_states
        else None
      )
    else:
      self.null_proj_embedding = self.null_encoder_hidden_states = None

  # -- the image-embedding normalisation (diffusers' post_process_latents) --------------
  def normalise(self, image_embeds):
    return (image_embeds - self.clip_mean[...]) / self.clip_std[...]

  def denormalise(self, x):
    return x * self.clip_std[...] + self.clip_mean[...]

  def _condition(self, batch, proj_embedding, hidden, mask, class_labels, drop):
    """The condition with the dropped rows replaced by the unconditional one."""
    c = self.config
    if c.num_classes:
      if class_labels is None:
        raise ValueError(
          "this prior is class-conditioned (model.num_classes="
          f"{c.num_classes}); pass class_labels (B,)"
        )
      labels = class_labels.astype(jnp.int32)
      if drop is not None:
        labels = jnp.where(drop, c.num_classes, labels)
      return self.class_embedding(labels), None, None
    if proj_embedding is None:
      raise ValueError(f"proj_embedding (B, {c.proj_dim}) is required")
    if c.uses_hidden_states:
      if hidden is None:
        raise ValueError(
          f"encoder_hidden_states (B, {c.num_embeddings}, "
          f"{c.embedding_dim}) are required (encoder_hid_proj_type="
          f"{c.encoder_hid_proj_type!r})"
        )
      if mask is None:
        mask = jnp.ones(hidden.shape[:2], bool)
    if drop is not None and self.null_proj_embedding is not None:
      d = drop.astype(bool)
      proj_embedding = jnp.where(d[:, None], self.null_proj_embedding[...], proj_embedding)
      if c.uses_hidden_states:
        hidden = jnp.where(d[:, None, None], self.null_encoder_hidden_states[...], hidden)
        mask = jnp.where(d[:, None], True, mask)
    return proj_embedding, hidden, mask

  def __call__(
    self,
    x_t,
    t,
    proj_embedding=None,
    encoder_hidden_states=None,
    attention_mask=None,
    *,
    class_labels=None,
    drop=None,
    rngs: nnx.Rngs | None = None,
  ):
    """Predicted clean (normalised) image embedding (B, clip_embed_dim).

    x_t (B, embedding_dim) noisy normalised image embedding; t (B,) timesteps;
    proj_embedding (B, proj_dim) CLIP text embedding; encoder_hidden_states
    (B, num_embeddings, embedding_dim) CLIP text hidden states and attention_mask
    (B, num_embeddings) bool (None: all valid); class_labels (B,) ints for a
    class-conditioned prior; drop (B,) bool: rows that get the unconditional condition
    (learned null, or the null class). `rngs` enables dropout (training only).
    The causal mask is always applied; diffusers drops it when attention_mask is None,
    but its unCLIP pipelines always pass a mask.
    """
    c = self.config
    b = x_t.shape[0]
    proj, hidden, mask = self._condition(
      b, proj_embedding, encoder_hidden_states, attention_mask, class_labels, drop
    )
    t = jnp.broadcast_to(jnp.asarray(t), (b,))
    temb = self.time_embedding(
      timestep_embedding(t, c.inner_dim, flip_sin_to_cos=True, freq_shift=0.0)
    )
    if self.embedding_proj_norm is not None:
      proj = self.embedding_proj_norm(proj)
    tokens = [
      self.embedding_proj(proj)[:, None],
      temb[:, None],
      self.proj_in(x_t)[:, None],
      jnp.broadcast_to(self.prd_embedding[...], (b, 1, c.inner_dim)),
    ]
    if c.uses_hidden_states:
      tokens.insert(0, self.encoder_hidden_states_proj(hidden))
    h = jnp.concatenate(tokens, axis=1) + self.positional_embedding[...]
    seq = h.shape[1]
    causal = jnp.triu(jnp.full((seq, seq), MASK_VALUE, jnp.float32), k=1)
    if mask is not None and c.uses_hidden_states:  # a mask over text tokens, if any
      key_bias = (1.0 - mask.astype(jnp.float32)) * MASK_VALUE
      key_bias = jnp.pad(key_bias, ((0, 0), (0, c.additional_embeddings)))
      bias = key_bias[:, None, None, :] + causal[None, None]
    else:
      bias = jnp.broadcast_to(causal[None, None], (b, 1, seq, seq))
    if self.norm_in is not None:
      h = self.norm_in(h)
    for block in self.transformer_blocks:
      h = block(h, bias, rngs)
    return self.proj_to_clip_embeddings(self.norm_out(h)[:, -1])
