"""CLIP text and vision encoders with projection heads, in Flax NNX.

The paper conditions both generators on the CLIP image embedding of the centre frame
and maps text to that embedding with a prior (Sec 4.1), so we need OpenAI's CLIP towers
with pretrained weights. Module and parameter names follow transformers'
`CLIPTextModelWithProjection` / `CLIPVisionModelWithProjection` one-to-one
(`text_model.encoder.layers.0.self_attn.q_proj`, `vision_model.pre_layrnorm` [sic], ...),
so converting their PyTorch weights is a table (`convert/transformers_clip.py`).
Images are channels-last `(B, H, W, 3)`, already preprocessed (`preprocess_frames`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

# transformers' ACT2FN names used by CLIP checkpoints -> the function.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
  "gelu": functools.partial(jax.nn.gelu, approximate=False),
  "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
  "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
  "relu": jax.nn.relu,
  "silu": jax.nn.silu,
}
# The checkpoints before transformers PR #24773 carry eos_token_id=2 and pool at the
# largest token id (OpenAI's end-of-text token has the largest id of the vocabulary).
LEGACY_EOS_TOKEN_ID = 2
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_common(c, name: str) -> None:
  if c.hidden_act not in ACTIVATIONS:
    raise ValueError(f"{name}.hidden_act={c.hidden_act!r}; expected one of {sorted(ACTIVATIONS)}")
  if c.hidden_size % c.num_attention_heads:
    raise ValueError(
      f"{name}.hidden_size={c.hidden_size} is not divisible by "
      f"num_attention_heads={c.num_attention_heads}"
    )
  for field in ("hidden_size", "intermediate_size", "num_attention_heads", "projection_dim"):
    if getattr(c, field) < 1:
      raise ValueError(f"{name}.{field}={getattr(c, field)}; expected >= 1")


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
  """transformers' `CLIPTextConfig` fields that change the computation (same defaults)."""

  vocab_size: int = 49408
  hidden_size: int = 512
  intermediate_size: int = 2048
  num_hidden_layers: int = 12
  num_attention_heads: int = 8
  max_position_embeddings: int = 77  # the context length of the tokenizer
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  projection_dim: int = 512
  bos_token_id: int = 49406
  eos_token_id: int = 49407  # 2 in old configs: pool at argmax(input_ids)
  pad_token_id: int = 1

  def validate(self) -> None:
    _check_common(self, "text_config")


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
  """transformers' `CLIPVisionConfig` fields that change the computation (same defaults)."""

  hidden_size: int = 768
  intermediate_size: int = 3072
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  image_size: int = 224
  patch_size: int = 32
  num_channels: int = 3
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  projection_dim: int = 512

  def validate(self) -> None:
    _check_common(self, "vision_config")
    if self.image_size % self.patch_size:
      raise ValueError(
        f"vision_config.image_size={self.image_size} is not a multiple of "
        f"patch_size={self.patch_size}"
      )


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  """Both towers, or one of them (a `*WithProjection` checkpoint holds one)."""

  text: CLIPTextConfig | None = None
  vision: CLIPVisionConfig | None = None

  def validate(self) -> None:
    if self.text is None and self.vision is None:
      raise ValueError("CLIPConfig has neither a text nor a vision tower")
    for tower in (self.text, self.vision):
      if tower is not None:
        tower.validate()

  def to_dict(self) -> dict:
    return {
      "text": dataclasses.asdict(self.text) if self.text else None,
      "vision": dataclasses.asdict(self.vision) if self.vision else None,
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> CLIPConfig:
    """Inverse of `to_dict`."""
    return cls(
      text=CLIPTextConfig(**d["text"]) if d.get("text") else None,
      vision=CLIPVisionConfig(**d["vision"]) if d.get("vision") else None,
    )


def _square(value, name: str) -> int:
  if isinstance(value, (list, tuple)):
    if len(value) != 2 or value[0] != value[1]:
      raise ValueError(f"vision_config.{name}={value}; only square sizes are supported")
    value = value[0]
  return int(value)


def _tower(cls, d: Mapping[str, Any], name: str, projection_dim):
  fields = {f.name for f in dataclasses.fields(cls)}
  kwargs = {k: v for k, v in d.items() if k in fields and v is not None}
  if isinstance(kwargs.get("eos_token_id"), (list, tuple)):
    raise ValueError(f"{name}.eos_token_id={kwargs['eos_token_id']}; expected one id")
  for k in ("image_size", "patch_size"):
    if k in kwargs:
      kwargs[k] = _square(kwargs[k], k)
  if projection_dim is not None:
    kwargs["projection_dim"] = projection_dim
  return cls(**kwargs)


def clip_config_from_transformers(d: Mapping[str, Any]) -> CLIPConfig:
  """A transformers `config.json` dict (CLIPModel or a `*WithProjection`) -> CLIPConfig.

  Missing fields take transformers' defaults (`save_pretrained` writes only the fields
  that differ from them). A full CLIPModel's `projection_dim` sets both heads.
  """
  model_type = d.get("model_type")
  if model_type == "clip" or "text_config" in d or "vision_config" in d:
    proj = d.get("projection_dim", 512)
    config = CLIPConfig(
      text=_tower(CLIPTextConfig, d.get("text_config") or {}, "text_config", proj),
      vision=_tower(CLIPVisionConfig, d.get("vision_config") or {}, "vision_config", proj),
    )
  elif model_type == "clip_text_model":
    config = CLIPConfig(text=_tower(CLIPTextConfig, d, "text_config", None))
  elif model_type == "clip_vision_model":
    config = CLIPConfig(vision=_tower(CLIPVisionConfig, d, "vision_config", None))
  else:
    raise ValueError(
      f"config.json has model_type={model_type!r}; expected 'clip', "
      "'clip_text_model' or 'clip_vision_model' (a transformers CLIP folder)"
    )
  config.validate()
  return config


class CLIPAttention(nnx.Module):
  """Multi-head self-attention with separate q/k/v/out projections (with biases)."""

  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    self.heads = heads
    self.q_proj = nnx.Linear(dim, dim, rngs=rngs)
    self.k_proj = nnx.Linear(dim, dim, rngs=rngs)
    self.v_proj = nnx.Linear(dim, dim, rngs=rngs)
    self.out_proj = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """x (B, L, D); mask (L, L) bool, True where a query may attend to a key."""
    b, n, d = x.shape
    split = lambda y: y.reshape(b, n, self.heads, d // self.heads)
    q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (d // self.heads) ** -0.5
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(x.dtype)
    return self.out_proj(jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, d))


class CLIPMLP(nnx.Module):
  def __init__(self, dim: int, hidden: int, act: str, *, rngs: nnx.Rngs):
    self.act = act
    self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(ACTIVATIONS[self.act](self.fc1(x)))


def _layer_norm(dim: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, rngs=rngs)


class CLIPEncoderLayer(nnx.Module):
  """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

  def __init__(self, c: CLIPTextConfig | CLIPVisionConfig, *, rngs: nnx.Rngs):
    self.self_attn = CLIPAttention(c.hidden_size, c.num_attention_heads, rngs=rngs)
    self.layer_norm1 = _layer_norm(c.hidden_size, c.layer_norm_eps, rngs)
    self.mlp = CLIPMLP(c.hidden_size, c.intermediate_size, c.hidden_act, rngs=rngs)
    self.layer_norm2 = _layer_norm(c.hidden_size, c.layer_norm_eps, rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    x = x + self.self_attn(self.layer_norm1(x), mask)
    return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
  def __init__(self, c: CLIPTextConfig | CLIPVisionConfig, *, rngs: nnx.Rngs):
    self.layers = nnx.List([CLIPEncoderLayer(c, rngs=rngs) for _ in range(c.num_hidden_layers)])

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    for layer in self.layers:
      x = layer(x, mask)
    return x


class CLIPTextEmbeddings(nnx.Module):
  def __init__(self, c: CLIPTextConfig, *, rngs: nnx.Rngs):
    self.token_embedding = nnx.Embed(c.vocab_size, c.hidden_size, rngs=rngs)
    self.position_embedding = nnx.Embed(c.max_position_embeddings, c.hidden_size, rngs=rngs)

  def __call__(self, input_ids: jax.Array) -> jax.Array:
    positions = jnp.arange(input_ids.shape[-1])
    return self.token_embedding(input_ids) + self.position_embedding(positions)[None]


class CLIPTextTransformer(nnx.Module):
  """transformers' `CLIPTextModel`: embeddings, causal encoder, final LayerNorm."""

  def __init__(self, c: CLIPTextConfig, *, rngs: nnx.Rngs):
    self.eos_token_id = c.eos_token_id
    self.embeddings = CLIPTextEmbeddings(c, rngs=rngs)
    self.encoder = CLIPEncoder(c, rngs=rngs)
    self.final_layer_norm = _layer_norm(c.hidden_size, c.layer_norm_eps, rngs)

  def __call__(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """input_ids (B, L) int -> (last_hidden_state (B, L, D), pooled (B, D))."""
    n = input_ids.shape[-1]
    causal = jnp.tril(jnp.ones((n, n), bool))
    h = self.final_layer_norm(self.encoder(self.embeddings(input_ids), causal))
    ids = input_ids.astype(jnp.int32)
    if self.eos_token_id == LEGACY_EOS_TOKEN_ID:
      pool_at = jnp.argmax(ids, axis=-1)
    else:  # the first end-of-text token (padding may use the same id)
      pool_at = jnp.argmax((ids == self.eos_token_id).astype(jnp.int32), axis=-1)
    return h, jnp.take_along_axis(h, pool_at[:, None, None], axis=1)[:, 0]


class CLIPTextModelWithProjection(nnx.Module):
  """Text tower + `text_projection` (no bias), as transformers names them."""

  def __init__(self, config: CLIPTextConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    self.text_model = CLIPTextTransformer(config, rngs=rngs)
    self.text_projection = nnx.Linear(
      config.hidden_size, config.projection_dim, use_bias=False, rngs=rngs
    )

  def __call__(self, input_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """input_ids (B, L) -> (last_hidden_state (B, L, D), text_embeds (B, P))."""
    if input_ids.ndim != 2 or input_ids.shape[1] > self.config.max_position_embeddings:
      raise ValueError(
        f"input_ids has shape {tuple(input_ids.shape)}; expected (B, L) with "
        f"L <= max_position_embeddings={self.config.max_position_embeddings}"
      )
    h, pooled = self.text_model(input_ids)
    return h, self.text_projection(pooled)


class CLIPVisionEmbeddings(nnx.Module):
  """Patchify (a strided conv without bias), prepend the class token, add positions."""

  def __init__(self, c: CLIPVisionConfig, *, rngs: nnx.Rngs):
    p = c.patch_size
    self.class_embedding = nnx.Param(jax.random.normal(rngs.params(), (c.hidden_size,)))
    self.patch_embedding = nnx.Conv(
      c.num_channels,
      c.hidden_size,
      (p, p),
      strides=(p, p),
      padding="VALID",
      use_bias=False,
      rngs=rngs,
    )
    self.position_embedding = nnx.Embed((c.image_size // p) ** 2 + 1, c.hidden_size, rngs=rngs)

  def __call__(self, pixels: jax.Array) -> jax.Array:
    patches = self.patch_embedding(pixels)  # (B, h, w, D)
    b, _, _, d = patches.shape
    cls = jnp.broadcast_to(self.class_embedding[...], (b, 1, d)).astype(patches.dtype)
    x = jnp.concatenate([cls, patches.reshape(b, -1, d)], axis=1)
    return x + self.position_embedding(jnp.arange(x.shape[1]))[None]


class CLIPVisionTransformer(nnx.Module):
  """transformers' `CLIPVisionModel`: embeddings, pre-norm, encoder, post-norm of CLS."""

  def __init__(self, c: CLIPVisionConfig, *, rngs: nnx.Rngs):
    self.embeddings = CLIPVisionEmbeddings(c, rngs=rngs)
    self.pre_layrnorm = _layer_norm(c.hidden_size, c.layer_norm_eps, rngs)  # sic, as in HF
    self.encoder = CLIPEncoder(c, rngs=rngs)
    self.post_layernorm = _layer_norm(c.hidden_size, c.layer_norm_eps, rngs)

  def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = self.encoder(self.pre_layrnorm(self.embeddings(pixels)))
    return h, self.post_layernorm(h[:, 0])


class CLIPVisionModelWithProjection(nnx.Module):
  """Vision tower + `visual_projection` (no bias), as transformers names them."""

  def __init__(self, config: CLIPVisionConfig, *, rngs: nnx.Rngs):
    config.validate()
    self.config = config
    self.vision_model = CLIPVisionTransformer(config, rngs=rngs)
    self.visual_projection = nnx.Linear(
      config.hidden_size, config.projection_dim, use_bias=False, rngs=rngs
    )

  def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """pixels (B, S, S, C) normalised -> (last_hidden_state (B, 1+P, D), image_embeds)."""
    c = self.config
    want = (c.image_size, c.image_size, c.num_channels)
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != want:
      raise ValueError(
        f"pixels has shape {tuple(pixels.shape)}; expected (B, {want[0]}, "
        f"{want[1]}, {want[2]}) (use preprocess_frames)"
      )
    h, pooled = self.vision_model(pixels)
    return h, self.visual_projection(pooled)


def resize_shortest_edge_shape(height: int, width: int, size: int) -> tuple[int, int]:
  """CLIPImageProcessor's output size: the short side becomes `size`, the long side floors."""
  if height <= width:
    return size, int(size * width / height)
  return int(size * height / width), size


def preprocess_frames(
  frames: jax.Array,
  image_size: int = 224,
  *,
  quantize: bool = True,
  mean=OPENAI_CLIP_MEAN,
  std=OPENAI_CLIP_STD,
) -> jax.Array:
  """(B, H, W, 3) frames in [-1, 1] -> CLIP pixels (B, S, S, 3), as CLIPImageProcessor.

  Bicubic resize of the shortest side to `image_size` (antialiased when shrinking, like
  PIL), centre crop, then (x - mean) / std per channel on [0, 1] values. `quantize`
  rounds to uint8 levels before and after each resize pass, as PIL on uint8 images
  does: the result then equals transformers' processor up to a rare one-level rounding
  difference (1/255/std = 0.015); without it, values differ by up to that everywhere.
  """
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"frames has shape {tuple(frames.shape)}; expected (B, H, W, 3)")
  b, h, w, _ = frames.shape
  x = jnp.clip((frames.astype(jnp.float32) + 1.0) * 127.5, 0.0, 255.0)
  nh, nw = resize_shortest_edge_shape(h, w, image_size)
  if quantize:
    x = jnp.round(x)
  # PIL resizes width then height, storing uint8 in between: clip (and round) each pass.
  for shape in ((b, h, nw, 3), (b, nh, nw, 3)):
    if shape != x.shape:
      x = jnp.clip(jax.image.resize(x, shape, "bicubic", antialias=True), 0.0, 255.0)
      x = jnp.round(x) if quantize else x
  x = x / 255.0
  top, left = (nh - image_size) // 2, (nw - image_size) // 2
  x = x[:, top : top + image_size, left : left + image_size]
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
