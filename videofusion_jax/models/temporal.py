"""Cross-frame layers: attention and convolution over the frame axis.

The spatial layers see frames folded into the batch, `(B*F, H, W, C)`; these layers
unfold to `(B, F, H, W, C)`, mix information along F at every pixel, and fold back.
Both start as the identity (zero-initialised output projection), so adding them to a
pretrained image U-Net leaves its output unchanged at step 0. The residual generator
and the VDM baseline share them (names follow diffusers' `UNet3DConditionModel`:
`temp_attentions`, `temp_convs`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from videofusion_jax.models.attention import multi_head_attention
from videofusion_jax.models.layers import group_norm, in_named_scope

TEMPORAL_KINDS = ("none", "attention", "conv", "attention+conv")


def check_temporal_kind(kind: str, name: str = "model.residual_temporal") -> None:
  if kind not in TEMPORAL_KINDS:
    raise ValueError(f"{name}={kind!r}; expected one of {TEMPORAL_KINDS}")


def _unfold(x: jax.Array, num_frames: int) -> jax.Array:
  bf, h, w, c = x.shape
  if bf % num_frames:
    raise ValueError(f"batch*frames={bf} is not a multiple of num_frames={num_frames}")
  return rearrange(x, "(b f) h w c -> b f h w c", f=num_frames)


class TemporalAttention(nnx.Module):
  """Self-attention over frames at each pixel with a learned relative-position bias.

  The bias is one scalar per head and frame distance, clipped at `max_distance`
  (VDM's factorised space-time attention, Ho et al. 2022).
  """

  def __init__(
    self,
    channels: int,
    *,
    head_dim: int = 64,
    groups: int = 32,
    eps: float = 1e-5,
    max_distance: int = 32,
    rngs: nnx.Rngs,
  ):
    self.heads = max(1, channels // head_dim)
    if channels % self.heads:
      raise ValueError(
        f"temporal attention channels={channels} not divisible into {self.heads} heads"
      )
    self.max_distance = max_distance
    self.norm = group_norm(channels, groups, eps, rngs)
    self.to_q = nnx.Linear(channels, channels, rngs=rngs)
    self.to_k = nnx.Linear(channels, channels, rngs=rngs)
    self.to_v = nnx.Linear(channels, channels, rngs=rngs)
    self.to_out = nnx.Linear(channels, channels, kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.rel_pos_bias = nnx.Embed(2 * max_distance + 1, self.heads, rngs=rngs)

  def __call__(self, x: jax.Array, num_frames: int) -> jax.Array:
    """x (B*F, H, W, C) -> (B*F, H, W, C)."""
    v5 = _unfold(x, num_frames)
    b, f, h, w, _ = v5.shape
    # Normalise over the whole clip, then attend along F for each of the B*H*W pixels.
    tokens = rearrange(self.norm(v5), "b f h w c -> (b h w) f c")
    pos = jnp.arange(f)
    dist = jnp.clip(pos[None, :] - pos[:, None], -self.max_distance, self.max_distance)
    bias = self.rel_pos_bias(dist + self.max_distance).transpose(2, 0, 1)[None]  # (1,h,F,F)
    out = multi_head_attention(
      self.to_q(tokens),
      self.to_k(tokens),
      self.to_v(tokens),
      self.heads,
      bias=bias.astype(tokens.dtype),
    )
    return x + rearrange(self.to_out(out), "(b h w) f c -> (b f) h w c", b=b, h=h, w=w)


class TemporalConv(nnx.Module):
  """GroupNorm, SiLU and a kernel-3 convolution along frames, added residually."""

  def __init__(self, channels: int, *, groups: int = 32, eps: float = 1e-5, rngs: nnx.Rngs):
    self.norm = group_norm(channels, groups, eps, rngs)
    self.conv = nnx.Conv(
      channels, channels, (3,), padding=((1, 1),), kernel_init=nnx.initializers.zeros, rngs=rngs
    )

  def __call__(self, x: jax.Array, num_frames: int) -> jax.Array:
    v5 = _unfold(x, num_frames)
    b, _, h, w, _ = v5.shape
    seq = rearrange(nnx.silu(self.norm(v5)), "b f h w c -> (b h w) f c")
    return x + rearrange(self.conv(seq), "(b h w) f c -> (b f) h w c", b=b, h=h, w=w)


class TemporalMixer(nnx.Module):
  """The cross-frame layers placed after one spatial block, per `kind`."""

  def __init__(
    self, channels: int, kind: str, *, head_dim: int, groups: int, eps: float, rngs: nnx.Rngs
  ):
    check_temporal_kind(kind)
    self.temp_conv = (
      TemporalConv(channels, groups=groups, eps=eps, rngs=rngs) if "conv" in kind else None
    )
    self.temp_attention = (
      TemporalAttention(channels, head_dim=head_dim, groups=groups, eps=eps, rngs=rngs)
      if "attention" in kind
      else None
    )

  @in_named_scope("temporal_layer")
  def __call__(self, x: jax.Array, num_frames: int) -> jax.Array:
    if self.temp_conv is not None:
      x = self.temp_conv(x, num_frames)
    if self.temp_attention is not None:
      x = self.temp_attention(x, num_frames)
    return x
