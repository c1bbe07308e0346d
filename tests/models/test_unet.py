"""U-Net behaviour: embeddings, normalisation, cross-frame mixing, conditioning, errors."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax.models.layers import group_norm, timestep_embedding
from videofusion_jax.models.temporal import TemporalAttention, TemporalConv
from videofusion_jax.models.unet import UNet, UNetConfig

TINY = UNetConfig(
  block_out_channels=(32, 64),
  layers_per_block=1,
  attention_levels=(1,),
  attention_head_dim=32,
  norm_num_groups=8,
)


def _reference_timestep_embedding(t, dim, flip, shift, max_period=10000.0):
  # diffusers' get_timestep_embedding, re-derived in float64 numpy.
  half = dim // 2
  freqs = np.exp(-math.log(max_period) * np.arange(half) / (half - shift))
  args = np.asarray(t, np.float64)[:, None] * freqs[None]
  emb = np.concatenate([np.sin(args), np.cos(args)], axis=-1)
  return np.concatenate([emb[:, half:], emb[:, :half]], -1) if flip else emb


@pytest.mark.parametrize("flip,shift", [(True, 0.0), (False, 1.0)])
def test_timestep_embedding_matches_diffusers_formula(flip, shift):
  t = np.array([0, 1, 17, 999])
  got = timestep_embedding(jnp.asarray(t), 32, flip_sin_to_cos=flip, freq_shift=shift)
  np.testing.assert_allclose(got, _reference_timestep_embedding(t, 32, flip, shift), atol=2e-4)


def test_group_norm_is_two_pass_with_torch_epsilon():
  # Mean 100, std 0.01: one-pass E[x^2]-E[x]^2 loses everything here (catastrophic cancellation).
  x = 100.0 + 0.01 * jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
  norm = group_norm(8, 2, 1e-5, nnx.Rngs(0))
  g = np.asarray(x, np.float64).reshape(2, 16, 2, 4)
  mean = g.mean(axis=(1, 3), keepdims=True)
  var = g.var(axis=(1, 3), keepdims=True)
  ref = ((g - mean) / np.sqrt(var + 1e-5)).reshape(2, 4, 4, 8)
  np.testing.assert_allclose(norm(x), ref, atol=2e-2)
  assert norm.epsilon == 1e-5


def _perturb(module, scale=0.5, seed=1):
  """Give zero-initialised output layers random weights so they do something."""
  state = nnx.state(module, nnx.Param)
  leaves, tree = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
  nnx.update(module, jax.tree.unflatten(tree, leaves))


@pytest.mark.parametrize("cls", [TemporalAttention, TemporalConv])
def test_temporal_layers_start_as_identity_then_mix_frames(cls):
  layer = (
    cls(32, groups=8, rngs=nnx.Rngs(0))
    if cls is TemporalConv
    else cls(32, head_dim=16, groups=8, rngs=nnx.Rngs(0))
  )
  x = jax.random.normal(jax.random.key(0), (2 * 4, 4, 4, 32))  # 2 clips of 4 frames
  np.testing.assert_array_equal(layer(x, 4), x)
  _perturb(layer)
  y = layer(x, 4)
  x2 = x.at[1].add(1.0)  # clip 0, frame 1
  y2 = layer(x2, 4)
  assert float(jnp.abs(y2[0] - y[0]).max()) > 1e-3  # same clip, other frame
  np.testing.assert_array_equal(y2[4:], y[4:])  # other clip untouched


def test_spatial_unet_treats_folded_frames_independently_temporal_does_not():
  x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
  t = jnp.full((4,), 10)
  plain = UNet(TINY, rngs=nnx.Rngs(0))
  video = UNet(dataclasses.replace(TINY, temporal="attention+conv"), rngs=nnx.Rngs(0))
  _perturb(video, scale=0.05)
  x2 = x.at[0].add(1.0)
  np.testing.assert_allclose(plain(x2, t)[1:], plain(x, t)[1:], atol=1e-5)
  diff = jnp.abs(video(x2, t, num_frames=4)[1:] - video(x, t, num_frames=4)[1:]).max()
  assert float(diff) > 1e-3


def test_frame_index_changes_output_of_frame_conditioned_unet():
  net = UNet(dataclasses.replace(TINY, frame_conditioned=True), rngs=nnx.Rngs(0))
  x = jnp.broadcast_to(jax.random.normal(jax.random.key(0), (1, 16, 16, 3)), (2, 16, 16, 3))
  out = net(x, jnp.array([5, 5]), frame_index=jnp.array([0, 3]))
  assert float(jnp.abs(out[0] - out[1]).max()) > 1e-4
  with pytest.raises(ValueError, match="frame_index"):
    net(x, jnp.array([5, 5]))


def test_class_embedding_and_condition_tokens_reach_the_output():
  cfg = dataclasses.replace(
    TINY,
    class_embed_type="embedding",
    num_class_embeds=3,
    cross_attention_dim=12,
    resnet_updown=True,
  )
  net = UNet(cfg, rngs=nnx.Rngs(0))
  x = jnp.broadcast_to(jax.random.normal(jax.random.key(0), (1, 16, 16, 3)), (2, 16, 16, 3))
  t = jnp.array([7, 7])
  ctx = jax.random.normal(jax.random.key(1), (2, 5, 12))
  by_label = net(x, t, class_labels=jnp.array([0, 2]), context=ctx[:1].repeat(2, 0))
  assert float(jnp.abs(by_label[0] - by_label[1]).max()) > 1e-4
  by_context = net(x, t, class_labels=jnp.array([1, 1]), context=ctx)
  assert float(jnp.abs(by_context[0] - by_context[1]).max()) > 1e-4
  # resnet_updown puts the resampling inside ResNet blocks, as unCLIP decoders do.
  assert type(net.down_blocks[0].downsamplers[0]).__name__ == "ResnetBlock2D"


def test_diffusers_layout_of_channels():
  net = UNet(
    UNetConfig(
      block_out_channels=(32, 64, 96),
      layers_per_block=2,
      attention_levels=(1, 2),
      attention_head_dim=32,
      norm_num_groups=8,
    ),
    rngs=nnx.Rngs(0),
  )
  # diffusers UNet2DModel: up stage i takes (prev, skip) channels in this order.
  ins = [[r.conv1.in_features for r in b.resnets] for b in net.up_blocks]
  assert ins == [
    [96 + 96, 96 + 96, 96 + 64],
    [96 + 64, 64 + 64, 64 + 32],
    [64 + 32, 32 + 32, 32 + 32],
  ]
  assert [b.attentions is not None for b in net.down_blocks] == [False, True, True]
  assert [b.attentions is not None for b in net.up_blocks] == [True, True, False]
  assert net.down_blocks[1].attentions[0].heads == 2
  assert net.mid_block.resnets[0].time_emb_proj.out_features == 2 * 96  # scale-shift


@pytest.mark.parametrize(
  "shape,match",
  [
    ((2, 16, 16), "expected \\(B, H, W, C\\)"),
    ((2, 17, 16, 3), "multiples of 2"),
    ((2, 16, 16, 4), "in_channels=3"),
  ],
)
def test_bad_input_shapes_are_named(shape, match):
  with pytest.raises(ValueError, match=match):
    TINY.check_input(shape)


@pytest.mark.parametrize(
  "change,match",
  [
    (dict(block_out_channels=(30, 64)), "norm_num_groups"),
    (dict(attention_levels=(2,)), "attention_levels"),
    (dict(temporal="3d"), "temporal"),
    (dict(class_embed_type="embedding"), "num_class_embeds"),
  ],
)
def test_bad_configs_are_named(change, match):
  with pytest.raises(ValueError, match=match):
    UNet(dataclasses.replace(TINY, **change), rngs=nnx.Rngs(0))


def test_deepfloyd_resnet_options():
  from videofusion_jax.models.layers import ResnetBlock2D

  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16))
  temb = jax.random.normal(jax.random.key(1), (2, 32))
  plain = ResnetBlock2D(16, 16, 32, groups=4, rngs=nnx.Rngs(0))
  scaled = ResnetBlock2D(16, 16, 32, groups=4, output_scale_factor=1.414, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(scaled(x, temb), plain(x, temb) / 1.414, rtol=1e-5, atol=1e-6)
  skip = ResnetBlock2D(16, 16, 32, groups=4, skip_time_act=True, rngs=nnx.Rngs(0))
  # Equal except for the embedding path: with a non-negative temb SiLU and identity differ.
  assert float(jnp.abs(skip(x, temb) - plain(x, temb)).max()) > 1e-4
  net = UNet(
    dataclasses.replace(TINY, resnet_out_scale_factor=1.414, resnet_skip_time_act=True),
    rngs=nnx.Rngs(0),
  )
  assert net.down_blocks[0].resnets[0].output_scale_factor == 1.414
  assert net.up_blocks[1].resnets[0].skip_time_act


def test_activations_are_pinned_at_block_boundaries_only_inside_a_sharded_trace():
  from jax.sharding import NamedSharding, PartitionSpec

  from videofusion_jax.models.logical_axes import IMAGE_ACTIVATION, activation_sharding, constrain

  net = UNet(TINY, rngs=nnx.Rngs(0))
  x, t = jax.random.normal(jax.random.key(1), (2, 16, 16, 3)), jnp.array([3, 500])
  assert constrain(x) is x  # outside a sharded trace (one device, tests): untouched
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  pinned = []

  def sharding_of(logical, shape):
    pinned.append((logical, shape))
    return NamedSharding(mesh, PartitionSpec())

  with activation_sharding(sharding_of):
    out = jax.jit(lambda x: net(x, t))(x)
  assert constrain(x) is x  # the context is gone after it
  assert {logical for logical, _ in pinned} == {IMAGE_ACTIVATION}
  # input, conv_in; down: layer, downsampler, layer; mid; up: 2 x (concatenated input,
  # output), upsampler, 2 x (concatenated input, output)
  levels = {shape[1:] for _, shape in pinned}
  assert {(16, 16, 32), (8, 8, 64), (8, 8, 96), (16, 16, 64)} <= levels, levels
  assert len(pinned) == 2 + 3 + 1 + 5 + 4
  np.testing.assert_array_equal(out, jax.jit(lambda x: net(x, t))(x))  # a layout, no math
