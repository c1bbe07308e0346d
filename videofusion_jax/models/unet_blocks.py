"""The down, mid and up stages of the U-Net (diffusers' `*Block2D` layout).

Each stage runs, per layer, a `ResnetBlock2D`, an optional spatial `Attention`, and
optional cross-frame layers (`TemporalMixer`) when the U-Net is a video network.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from videofusion_jax.models.layers import Attention, Downsample2D, ResnetBlock2D, Upsample2D
from videofusion_jax.models.logical_axes import constrain
from videofusion_jax.models.temporal import TemporalMixer


@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """What every stage of one U-Net shares (filled from `UNetConfig`)."""

  temb_channels: int
  groups: int
  eps: float
  dropout: float
  time_embedding_norm: str
  head_dim: int
  cross_attention_dim: int | None
  resnet_updown: bool
  temporal: str
  resnet_out_scale_factor: float = 1.0
  resnet_skip_time_act: bool = False
  remat_policy: str | None = None  # a jax.checkpoint_policies name; None: no remat

  def resnet(self, cin, cout, rngs, **kw):
    return ResnetBlock2D(
      cin,
      cout,
      self.temb_channels,
      groups=self.groups,
      eps=self.eps,
      dropout=self.dropout,
      time_embedding_norm=self.time_embedding_norm,
      output_scale_factor=self.resnet_out_scale_factor,
      skip_time_act=self.resnet_skip_time_act,
      rngs=rngs,
      **kw,
    )

  def attention(self, channels, rngs):
    return Attention(
      channels,
      head_dim=self.head_dim,
      groups=self.groups,
      eps=self.eps,
      cross_attention_dim=self.cross_attention_dim,
      rngs=rngs,
    )

  def temporal_mixer(self, channels, rngs):
    return TemporalMixer(
      channels, self.temporal, head_dim=self.head_dim, groups=self.groups, eps=self.eps, rngs=rngs
    )


def _layers(opts: BlockOptions, channels: list[int], out: int, attention: bool, rngs):
  resnets = nnx.List([opts.resnet(cin, out, rngs) for cin in channels])
  attentions = nnx.List([opts.attention(out, rngs) for _ in channels]) if attention else None
  temp = (
    nnx.List([opts.temporal_mixer(out, rngs) for _ in channels])
    if opts.temporal != "none"
    else None
  )
  return resnets, attentions, temp


def checkpointed(fn, policy: str | None):
  """`fn` rematerialised under `jax.checkpoint_policies.<policy>`, or `fn` for None:
  the backward pass recomputes the block's activations instead of storing them."""
  if policy is None:
    return fn
  return nnx.remat(fn, policy=getattr(jax.checkpoint_policies, policy))


def _layer(block, j, h, temb, context, num_frames, rngs, context_mask=None):
  def run(resnet, attention, mixer, h, temb, context, context_mask, rngs):
    h = resnet(h, temb, rngs=rngs)
    if attention is not None:
      h = attention(h, context, context_mask)
    if mixer is not None:
      h = mixer(h, num_frames)
    return constrain(h)  # a layer's output (and skip): batch split, channels whole

  pick = lambda layers: None if layers is None else layers[j]
  return checkpointed(run, block.remat_policy)(
    block.resnets[j],
    pick(block.attentions),
    pick(block.temp_mixers),
    h,
    temb,
    context,
    context_mask,
    rngs,
  )


class DownBlock(nnx.Module):
  """`num_layers` layers at one resolution, then (unless last) a 2x downsampler."""

  def __init__(
    self,
    cin: int,
    cout: int,
    num_layers: int,
    *,
    attention: bool,
    downsample: bool,
    opts: BlockOptions,
    rngs: nnx.Rngs,
  ):
    self.remat_policy = opts.remat_policy
    self.resnets, self.attentions, self.temp_mixers = _layers(
      opts, [cin] + [cout] * (num_layers - 1), cout, attention, rngs
    )
    if not downsample:
      self.downsamplers = None
    elif opts.resnet_updown:  # diffusers' ResnetDownsampleBlock2D
      self.downsamplers = nnx.List([opts.resnet(cout, cout, rngs, down=True)])
    else:
      self.downsamplers = nnx.List([Downsample2D(cout, rngs=rngs)])

  def __call__(self, h, temb, context, num_frames, rngs, context_mask=None):
    """Returns the output and the skip activations it adds, in order."""
    skips = []
    for j in range(len(self.resnets)):
      h = _layer(self, j, h, temb, context, num_frames, rngs, context_mask)
      skips.append(h)
    if self.downsamplers is not None:
      down = self.downsamplers[0]
      h = constrain(down(h, temb, rngs=rngs) if isinstance(down, ResnetBlock2D) else down(h))
      skips.append(h)
    return h, skips


class MidBlock(nnx.Module):
  """ResNet, attention, ResNet at the lowest resolution (diffusers `UNetMidBlock2D`)."""

  def __init__(self, channels: int, *, attention: bool, opts: BlockOptions, rngs: nnx.Rngs):
    self.remat_policy = opts.remat_policy
    self.resnets = nnx.List([opts.resnet(channels, channels, rngs) for _ in range(2)])
    self.attentions = nnx.List([opts.attention(channels, rngs)]) if attention else None
    self.temp_mixers = (
      nnx.List([opts.temporal_mixer(channels, rngs) for _ in range(2)])
      if opts.temporal != "none"
      else None
    )

  def __call__(self, h, temb, context, num_frames, rngs, context_mask=None):
    def run(block, h, temb, context, context_mask, rngs):  # num_frames: a static int
      return block._run(h, temb, context, num_frames, rngs, context_mask)

    return checkpointed(run, self.remat_policy)(self, h, temb, context, context_mask, rngs)

  def _run(self, h, temb, context, num_frames, rngs, context_mask=None):
    h = self.resnets[0](h, temb, rngs=rngs)
    if self.temp_mixers is not None:
      h = self.temp_mixers[0](h, num_frames)
    if self.attentions is not None:
      h = self.attentions[0](h, context, context_mask)
    h = self.resnets[1](h, temb, rngs=rngs)
    if self.temp_mixers is not None:
      h = self.temp_mixers[1](h, num_frames)
    return constrain(h)


class UpBlock(nnx.Module):
  """`num_layers` layers, each taking one skip activation, then (unless last) 2x up."""

  def __init__(
    self,
    cin: int,
    cout: int,
    prev_cout: int,
    num_layers: int,
    *,
    attention: bool,
    upsample: bool,
    opts: BlockOptions,
    rngs: nnx.Rngs,
  ):
    # Channel bookkeeping exactly as diffusers' UpBlock2D, so weights map one-to-one.
    channels = []
    for j in range(num_layers):
      skip = cin if j == num_layers - 1 else cout
      channels.append((prev_cout if j == 0 else cout) + skip)
    self.remat_policy = opts.remat_policy
    self.resnets, self.attentions, self.temp_mixers = _layers(opts, channels, cout, attention, rngs)
    if not upsample:
      self.upsamplers = None
    elif opts.resnet_updown:  # diffusers' ResnetUpsampleBlock2D
      self.upsamplers = nnx.List([opts.resnet(cout, cout, rngs, up=True)])
    else:
      self.upsamplers = nnx.List([Upsample2D(cout, rngs=rngs)])

  def __call__(self, h, skips: list[jax.Array], temb, context, num_frames, rngs, context_mask=None):
    """Consumes `len(self.resnets)` activations from the end of `skips`."""
    for j in range(len(self.resnets)):
      h = constrain(jnp.concatenate([h, skips.pop()], axis=-1))
      h = _layer(self, j, h, temb, context, num_frames, rngs, context_mask)
    if self.upsamplers is not None:
      up = self.upsamplers[0]
      h = constrain(up(h, temb, rngs=rngs) if isinstance(up, ResnetBlock2D) else up(h))
    return h
