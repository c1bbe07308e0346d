"""The ADM/Imagen-style 2D U-Net used as base generator, residual generator and baseline.

Structure and parameter names follow diffusers' `UNet2DModel` / `UNet2DConditionModel`
(`conv_in`, `time_embedding`, `class_embedding`, `down_blocks`, `mid_block`, `up_blocks`,
`conv_norm_out`, `conv_out`) so pretrained image diffusion weights convert by a table.
Video options on top: a frame-index embedding (`frame_embedding`, sinusoidal like the
timestep) and cross-frame layers after every spatial layer (`temporal`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax.models.attention import (
  attention_implementation,
  check_attention_implementation,
)
from videofusion_jax.models.layers import TimestepEmbedding, group_norm, timestep_embedding
from videofusion_jax.models.logical_axes import constrain
from videofusion_jax.models.temporal import check_temporal_kind
from videofusion_jax.models.unet_blocks import BlockOptions, DownBlock, MidBlock, UpBlock

CLASS_EMBED_TYPES = (None, "embedding", "projection", "identity")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
  """Every architectural choice of one U-Net; defaults are the paper's Table 8 base."""

  in_channels: int = 3  # input channels (+ any context channels concatenated)
  out_channels: int = 3  # 2x in_channels for learned-variance checkpoints
  block_out_channels: Sequence[int] = (192, 384, 576, 960)  # base dims x dim expansions
  layers_per_block: int = 2  # ResNet layers per down stage (up stages get one more)
  attention_levels: Sequence[int] = (1, 2, 3)  # stage indices with attention: 1/2, 1/4, 1/8
  mid_block_attention: bool = True
  attention_head_dim: int = 64
  norm_num_groups: int = 32
  norm_eps: float = 1e-5  # PyTorch's GroupNorm default; flax's is 1e-6
  dropout: float = 0.0
  resnet_time_scale_shift: str = "scale_shift"  # "default" (additive) or ADM's FiLM
  resnet_updown: bool = False  # resample inside ResNet blocks (unCLIP / IF decoders)
  resnet_out_scale_factor: float = 1.0  # ResNet output = (x + h) / factor (IF: 1.414)
  resnet_skip_time_act: bool = False  # no SiLU before time_emb_proj (IF)
  flip_sin_to_cos: bool = True
  freq_shift: float = 0.0
  class_embed_type: str | None = None  # None, "embedding" (ids), "projection", "identity"
  num_class_embeds: int | None = None  # number of class ids for "embedding"
  class_embed_input_dim: int | None = None  # vector size for "projection" (e.g. CLIP 768)
  cross_attention_dim: int | None = None  # condition-token width added as extra keys/values
  frame_conditioned: bool = False  # add an embedding of the frame index (residual net)
  temporal: str = "none"  # cross-frame layers: none, attention, conv, attention+conv

  @property
  def time_embed_dim(self) -> int:
    return 4 * self.block_out_channels[0]

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)

  def validate(self, name: str = "unet") -> None:
    """Raise `ValueError` naming the field for settings that cannot build a network."""
    chans = tuple(self.block_out_channels)
    if not chans or any(c <= 0 for c in chans):
      raise ValueError(f"{name}.block_out_channels={chans}; expected positive channel counts")
    for c in chans:
      if c % self.norm_num_groups:
        raise ValueError(
          f"{name}.block_out_channels={chans}: {c} is not divisible by "
          f"{name}.norm_num_groups={self.norm_num_groups}"
        )
    bad = [l for l in self.attention_levels if not 0 <= l < len(chans)]
    if bad:
      raise ValueError(
        f"{name}.attention_levels={tuple(self.attention_levels)}; expected "
        f"stage indices in [0, {len(chans) - 1}]"
      )
    if self.layers_per_block < 1:
      raise ValueError(f"{name}.layers_per_block={self.layers_per_block}; expected >= 1")
    if self.class_embed_type not in CLASS_EMBED_TYPES:
      raise ValueError(
        f"{name}.class_embed_type={self.class_embed_type!r}; expected one of {CLASS_EMBED_TYPES}"
      )
    if self.class_embed_type == "embedding" and not self.num_class_embeds:
      raise ValueError(f"{name}.num_class_embeds must be set for class_embed_type='embedding'")
    if self.class_embed_type == "projection" and not self.class_embed_input_dim:
      raise ValueError(
        f"{name}.class_embed_input_dim must be set for class_embed_type='projection'"
      )
    check_temporal_kind(self.temporal, f"{name}.temporal")

  def check_input(self, x_shape, name: str = "x") -> None:
    """Shape check for an input `(B, H, W, in_channels)`, before any compile."""
    if len(x_shape) != 4:
      raise ValueError(f"{name} has shape {tuple(x_shape)}; expected (B, H, W, C)")
    _, h, w, c = x_shape
    f = self.downsample_factor
    if h % f or w % f:
      raise ValueError(
        f"{name} spatial size {h}x{w} cannot be downsampled "
        f"{len(self.block_out_channels) - 1} times: H and W must be multiples "
        f"of {f}"
      )
    if c != self.in_channels:
      raise ValueError(f"{name} has {c} channels; the U-Net expects in_channels={self.in_channels}")


class UNet(nnx.Module):
  """2D denoising U-Net; `(B, H, W, C)` in, `(B, H, W, out_channels)` out."""

  def __init__(
    self,
    config: UNetConfig,
    *,
    remat_policy: str | None = None,
    attention: str = "xla",
    rngs: nnx.Rngs,
  ):
    """`remat_policy`: rematerialise every block under that `jax.checkpoint_policies`
    name (memory for compute; the parameters are the same either way). `attention`:
    how its attention layers compute (`attention.ATTENTION_IMPLEMENTATIONS`)."""
    config.validate()
    check_attention_implementation(attention)
    self.config = config
    self.attention_impl = attention
    chans = tuple(config.block_out_channels)
    temb = config.time_embed_dim
    opts = BlockOptions(
      temb_channels=temb,
      groups=config.norm_num_groups,
      eps=config.norm_eps,
      dropout=config.dropout,
      time_embedding_norm=config.resnet_time_scale_shift,
      head_dim=config.attention_head_dim,
      cross_attention_dim=config.cross_attention_dim,
      resnet_updown=config.resnet_updown,
      temporal=config.temporal,
      resnet_out_scale_factor=config.resnet_out_scale_factor,
      resnet_skip_time_act=config.resnet_skip_time_act,
      remat_policy=remat_policy,
    )

    self.conv_in = nnx.Conv(
      config.in_channels, chans[0], (3, 3), padding=((1, 1), (1, 1)), rngs=rngs
    )
    self.time_embedding = TimestepEmbedding(chans[0], temb, rngs=rngs)
    if config.class_embed_type == "embedding":
      self.class_embedding = nnx.Embed(config.num_class_embeds, temb, rngs=rngs)
    elif config.class_embed_type == "projection":
      self.class_embedding = TimestepEmbedding(config.class_embed_input_dim, temb, rngs=rngs)
    else:  # None, or "identity": the caller passes a vector of size time_embed_dim
      self.class_embedding = None
    self.frame_embedding = (
      TimestepEmbedding(chans[0], temb, rngs=rngs) if config.frame_conditioned else None
    )

    levels = len(chans)
    self.down_blocks = nnx.List(
      [
        DownBlock(
          chans[max(i - 1, 0)],
          chans[i],
          config.layers_per_block,
          attention=i in config.attention_levels,
          downsample=i < levels - 1,
          opts=opts,
          rngs=rngs,
        )
        for i in range(levels)
      ]
    )
    self.mid_block = MidBlock(chans[-1], attention=config.mid_block_attention, opts=opts, rngs=rngs)
    rev = chans[::-1]
    self.up_blocks = nnx.List(
      [
        UpBlock(
          rev[min(i + 1, levels - 1)],
          rev[i],
          rev[max(i - 1, 0)],
          config.layers_per_block + 1,
          attention=(levels - 1 - i) in config.attention_levels,
          upsample=i < levels - 1,
          opts=opts,
          rngs=rngs,
        )
        for i in range(levels)
      ]
    )
    self.conv_norm_out = group_norm(chans[0], config.norm_num_groups, config.norm_eps, rngs)
    self.conv_out = nnx.Conv(
      chans[0], config.out_channels, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs
    )

  def __call__(
    self,
    x: jax.Array,
    t: jax.Array,
    *,
    class_labels: jax.Array | None = None,
    context: jax.Array | None = None,
    frame_index: jax.Array | None = None,
    num_frames: int | None = None,
    rngs: nnx.Rngs | None = None,
    context_mask: jax.Array | None = None,
  ) -> jax.Array:
    """Denoise a batch of images.

    Args:
      x: (B, H, W, in_channels); for video networks frames are folded into B.
      t: (B,) integer timesteps.
      class_labels: (B,) ids ("embedding") or (B, D) vectors ("projection"/"identity").
      context: (B, L, cross_attention_dim) condition tokens for the attention layers.
      context_mask: (B, L) bool, False for context tokens the attention ignores
        (padding of a text prompt; diffusers' `attention_mask` of unCLIP decoders).
      frame_index: (B,) frame indices, required when `frame_conditioned`.
      num_frames: frames per clip folded into B, required for temporal layers.
      rngs: dropout randomness; None runs deterministically.
    """
    cfg = self.config
    # The network computes in its parameters' dtype (bfloat16 parameters cast from the
    # float32 master copy give bfloat16 compute): inputs and embeddings follow them.
    dtype = self.conv_in.kernel[...].dtype
    emb = self.time_embedding(
      timestep_embedding(
        t, cfg.block_out_channels[0], flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift
      ).astype(dtype)
    )
    if cfg.class_embed_type is not None:
      if class_labels is None:
        raise ValueError(f"class_labels required for class_embed_type={cfg.class_embed_type!r}")
      emb = emb + (
        class_labels.astype(emb.dtype)
        if self.class_embedding is None
        else self.class_embedding(_as_dtype(class_labels, dtype))
      )
    if self.frame_embedding is not None:
      if frame_index is None:
        raise ValueError("frame_index required by a frame_conditioned U-Net")
      emb = emb + self.frame_embedding(
        timestep_embedding(
          frame_index,
          cfg.block_out_channels[0],
          flip_sin_to_cos=cfg.flip_sin_to_cos,
          freq_shift=cfg.freq_shift,
        ).astype(dtype)
      )
    if cfg.temporal != "none" and num_frames is None:
      raise ValueError(f"num_frames required by a U-Net with temporal={cfg.temporal!r}")
    emb = emb.astype(dtype)  # not pinned: (B, 4C) is small, moving it beats gathering weights
    context = None if context is None else context.astype(dtype)

    h = constrain(self.conv_in(constrain(x.astype(dtype))))
    skips = [h]
    with attention_implementation(self.attention_impl):
      for block in self.down_blocks:
        h, block_skips = block(h, emb, context, num_frames, rngs, context_mask)
        skips.extend(block_skips)
      h = self.mid_block(h, emb, context, num_frames, rngs, context_mask)
      for block in self.up_blocks:
        h = block(h, skips, emb, context, num_frames, rngs, context_mask)
    return self.conv_out(nnx.silu(self.conv_norm_out(h)))


def _as_dtype(labels: jax.Array, dtype) -> jax.Array:
  """Class vectors follow the compute dtype; integer class ids stay integers."""
  return labels if jnp.issubdtype(labels.dtype, jnp.integer) else labels.astype(dtype)
