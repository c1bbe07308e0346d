"""Spatial building blocks of the U-Nets, named like diffusers' modules.

Attribute names follow `diffusers.models` (`ResnetBlock2D.norm1`, `Attention.to_q`, ...)
so converting PyTorch weights is a table of renames plus kernel transposes. All arrays
are channels-last: images `(B, H, W, C)`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax.models.attention import multi_head_attention


def cast_floats(tree, dtype):
  """Every floating-point leaf of `tree` as `dtype` (integer leaves, e.g. RNG counts,
  stay): mixed-precision parameter casts."""
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def in_named_scope(scope: str):
  """Decorate a layer's `__call__` to trace it under `jax.named_scope(scope)`: every XLA
  op it issues then carries the scope in its op_name, so a profile can say which kind
  of layer the time goes to (`benchmarks/op_profile.py`). Names only; no numerics."""

  def decorate(call):
    @functools.wraps(call)
    def scoped(*args, **kwargs):
      with jax.named_scope(scope):
        return call(*args, **kwargs)

    return scoped

  return decorate


# Stride-2 convolutions pad explicitly: 'SAME' with stride 2 pads (0, 1) where PyTorch's
# padding=1 pads (1, 1), and the outputs differ.
_PAD1 = ((1, 1), (1, 1))


def group_norm(channels: int, groups: int, eps: float, rngs: nnx.Rngs) -> nnx.GroupNorm:
  """GroupNorm as PyTorch computes it: two-pass variance, epsilon from the config."""
  return nnx.GroupNorm(channels, num_groups=groups, epsilon=eps, use_fast_variance=False, rngs=rngs)


def timestep_embedding(
  t: jax.Array,
  dim: int,
  *,
  flip_sin_to_cos: bool = True,
  freq_shift: float = 0.0,
  max_period: float = 10000.0,
) -> jax.Array:
  """Sinusoidal embedding of `t` (B,) -> (B, dim), diffusers' `get_timestep_embedding`.

  `flip_sin_to_cos` puts cosines first and `freq_shift` is its `downscale_freq_shift`:
  DDPM-era checkpoints use (False, 1), current diffusers U-Nets (True, 0).
  """
  half = dim // 2
  exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
  angles = t.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
  emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if flip_sin_to_cos:
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


class TimestepEmbedding(nnx.Module):
  """Two-layer MLP on a sinusoidal embedding (diffusers `TimestepEmbedding`)."""

  def __init__(self, in_dim: int, dim: int, *, rngs: nnx.Rngs):
    self.linear_1 = nnx.Linear(in_dim, dim, rngs=rngs)
    self.linear_2 = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.linear_2(nnx.silu(self.linear_1(x)))


def _avg_pool2(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _nearest_up2(x: jax.Array) -> jax.Array:
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Downsample2D(nnx.Module):
  """Halves H and W with a stride-2 3x3 convolution (diffusers `Downsample2D`, use_conv)."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(channels, channels, (3, 3), strides=2, padding=_PAD1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(x)


class Upsample2D(nnx.Module):
  """Doubles H and W: nearest neighbour, then a 3x3 convolution (diffusers `Upsample2D`)."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(channels, channels, (3, 3), padding=_PAD1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.conv(_nearest_up2(x))


class ResnetBlock2D(nnx.Module):
  """Pre-norm residual block with timestep conditioning (diffusers `ResnetBlock2D`).

  `time_embedding_norm="scale_shift"` is ADM's FiLM (`h = norm2(h) * (1 + s) + b`);
  `"default"` adds the projected embedding before `norm2`. `up`/`down` resample inside
  the block (BigGAN style, diffusers' `ResnetDownsampleBlock2D` / `ResnetUpsampleBlock2D`).
  `output_scale_factor` divides the residual sum and `skip_time_act` drops the SiLU before
  `time_emb_proj` (DeepFloyd IF's `resnet_out_scale_factor` / `resnet_skip_time_act`).
  """

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    temb_channels: int,
    *,
    groups: int = 32,
    eps: float = 1e-5,
    dropout: float = 0.0,
    time_embedding_norm: str = "default",
    up: bool = False,
    down: bool = False,
    output_scale_factor: float = 1.0,
    skip_time_act: bool = False,
    rngs: nnx.Rngs,
  ):
    if time_embedding_norm not in ("default", "scale_shift"):
      raise ValueError(
        f"time_embedding_norm={time_embedding_norm!r}; expected 'default' or 'scale_shift'"
      )
    self.scale_shift = time_embedding_norm == "scale_shift"
    self.up, self.down = up, down
    self.output_scale_factor = output_scale_factor
    self.skip_time_act = skip_time_act
    self.norm1 = group_norm(in_channels, groups, eps, rngs)
    self.conv1 = nnx.Conv(in_channels, out_channels, (3, 3), padding=_PAD1, rngs=rngs)
    proj_out = 2 * out_channels if self.scale_shift else out_channels
    self.time_emb_proj = nnx.Linear(temb_channels, proj_out, rngs=rngs)
    self.norm2 = group_norm(out_channels, groups, eps, rngs)
    self.dropout = nnx.Dropout(dropout)
    self.conv2 = nnx.Conv(out_channels, out_channels, (3, 3), padding=_PAD1, rngs=rngs)
    self.conv_shortcut = (
      nnx.Conv(in_channels, out_channels, (1, 1), rngs=rngs)
      if in_channels != out_channels
      else None
    )

  @in_named_scope("resnet_block")
  def __call__(self, x: jax.Array, temb: jax.Array, *, rngs: nnx.Rngs | None = None):
    """x (B, H, W, Cin), temb (B, D) -> (B, H', W', Cout)."""
    h = nnx.silu(self.norm1(x))
    if self.up:
      x, h = _nearest_up2(x), _nearest_up2(h)
    elif self.down:
      x, h = _avg_pool2(x), _avg_pool2(h)
    h = self.conv1(h)
    emb = self.time_emb_proj(temb if self.skip_time_act else nnx.silu(temb))[:, None, None, :]
    if self.scale_shift:
      scale, shift = jnp.split(emb, 2, axis=-1)
      h = self.norm2(h) * (1.0 + scale) + shift
    else:
      h = self.norm2(h + emb)
    h = self.dropout(nnx.silu(h), deterministic=rngs is None, rngs=rngs)
    h = self.conv2(h)
    if self.conv_shortcut is not None:
      x = self.conv_shortcut(x)
    return (x + h) / self.output_scale_factor


class Attention(nnx.Module):
  """Spatial self-attention over H*W tokens (diffusers `Attention`, 2D-block flavour).

  With `cross_attention_dim`, condition tokens are projected by `add_k_proj`/`add_v_proj`
  and prepended to the keys and values (diffusers' `AttnAddedKVProcessor`, used by
  `SimpleCrossAttn*` blocks in unCLIP decoders). Heads have `head_dim` channels.
  """

  def __init__(
    self,
    channels: int,
    *,
    head_dim: int = 64,
    groups: int = 32,
    eps: float = 1e-5,
    cross_attention_dim: int | None = None,
    rngs: nnx.Rngs,
  ):
    if channels % head_dim:
      raise ValueError(f"attention channels={channels} not divisible by head_dim={head_dim}")
    self.heads = channels // head_dim
    self.group_norm = group_norm(channels, groups, eps, rngs)
    self.to_q = nnx.Linear(channels, channels, rngs=rngs)
    self.to_k = nnx.Linear(channels, channels, rngs=rngs)
    self.to_v = nnx.Linear(channels, channels, rngs=rngs)
    if cross_attention_dim is not None:
      self.add_k_proj = nnx.Linear(cross_attention_dim, channels, rngs=rngs)
      self.add_v_proj = nnx.Linear(cross_attention_dim, channels, rngs=rngs)
    else:
      self.add_k_proj = self.add_v_proj = None
    self.to_out = nnx.Linear(channels, channels, rngs=rngs)

  @in_named_scope("spatial_attention")
  def __call__(
    self, x: jax.Array, context: jax.Array | None = None, context_mask: jax.Array | None = None
  ) -> jax.Array:
    """x (B, H, W, C); context (B, L, D) condition tokens or None; context_mask (B, L)
    bool, False for tokens to ignore (their logits get diffusers' -10000 bias; the
    image's own keys are never masked) -> (B, H, W, C)."""
    b, h, w, c = x.shape
    tokens = self.group_norm(x).reshape(b, h * w, c)
    q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
    bias = None
    if context is not None:
      if self.add_k_proj is None:
        raise ValueError("condition tokens given to an Attention built without cross_attention_dim")
      k = jnp.concatenate([self.add_k_proj(context).astype(k.dtype), k], axis=1)
      v = jnp.concatenate([self.add_v_proj(context).astype(v.dtype), v], axis=1)
      if context_mask is not None:
        bias = jnp.where(jnp.asarray(context_mask, bool), 0.0, -10000.0)
        bias = jnp.pad(bias, ((0, 0), (0, h * w)))[:, None, None, :].astype(q.dtype)
    out = self.to_out(multi_head_attention(q, k, v, self.heads, bias=bias))
    return x + out.reshape(b, h, w, c)
