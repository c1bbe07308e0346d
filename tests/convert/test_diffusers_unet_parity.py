"""Parity with diffusers: sub-modules and whole U-Nets give the torch outputs (fp32).

Random tiny torch modules are built here (nothing downloaded), converted through the
table of `videofusion_jax.convert.diffusers_unet`, and run on the same inputs.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers.models.attention_processor import Attention as TorchAttention  # noqa: E402
from diffusers.models.attention_processor import AttnAddedKVProcessor2_0  # noqa: E402
from diffusers.models.embeddings import TimestepEmbedding as TorchTimestepEmbedding  # noqa
from diffusers.models.embeddings import Timesteps  # noqa: E402
from diffusers.models.resnet import ResnetBlock2D as TorchResnetBlock2D  # noqa: E402

from tests.convert.tiny_unets import TINY_CONFIGS, jax_forward, torch_forward, unet_inputs
from videofusion_jax.convert import (
  convert_diffusers_unet,
  convert_state_dict,
  load_unet,
  param_table,
  unet_config_from_diffusers,
)
from videofusion_jax.convert.diffusers_unet import abstract_unet
from videofusion_jax.models.layers import (
  Attention,
  ResnetBlock2D,
  TimestepEmbedding,
  timestep_embedding,
)
from videofusion_jax.models.unet import UNet

RTOL, ATOL = 1e-4, 1e-5


def _randomise(module, seed=0):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return module.eval()


def _load(make, torch_module):
  """Our module built by `make(rngs)` with the torch module's converted weights."""
  abstract = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
  params = convert_state_dict(
    {k: v.numpy() for k, v in torch_module.state_dict().items()}, abstract
  )
  state = nnx.state(abstract, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(nnx.graphdef(abstract), state)


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * np.abs(want).max())


@pytest.mark.parametrize(
  "shift,up,down,cin,skip_act,scale",
  [
    ("default", False, False, 32, False, 1.0),
    ("scale_shift", False, False, 16, False, 1.0),  # conv_shortcut 16 -> 32
    ("scale_shift", True, False, 32, False, 1.0),  # ResnetUpsampleBlock2D's upsampler
    ("scale_shift", False, True, 32, True, 1.414),  # IF-style downsampler
  ],
)
def test_resnet_block(shift, up, down, cin, skip_act, scale):
  ref = _randomise(
    TorchResnetBlock2D(
      in_channels=cin,
      out_channels=32,
      temb_channels=64,
      groups=8,
      eps=1e-5,
      time_embedding_norm=shift,
      up=up,
      down=down,
      skip_time_act=skip_act,
      output_scale_factor=scale,
    )
  )
  ours = _load(
    lambda rngs: ResnetBlock2D(
      cin,
      32,
      64,
      groups=8,
      eps=1e-5,
      time_embedding_norm=shift,
      up=up,
      down=down,
      skip_time_act=skip_act,
      output_scale_factor=scale,
      rngs=rngs,
    ),
    ref,
  )
  rng = np.random.RandomState(0)
  x = rng.randn(2, 8, 8, cin).astype(np.float32)
  temb = rng.randn(2, 64).astype(np.float32)
  with torch.no_grad():
    want = ref(_nchw(x), torch.from_numpy(temb)).numpy().transpose(0, 2, 3, 1)
  _close(ours(jnp.asarray(x), jnp.asarray(temb)), want)


def test_self_attention_like_attn_down_block():
  ref = _randomise(
    TorchAttention(
      64,
      heads=4,
      dim_head=16,
      eps=1e-5,
      norm_num_groups=8,
      residual_connection=True,
      bias=True,
      upcast_softmax=True,
      _from_deprecated_attn_block=True,
    )
  )
  ours = _load(lambda rngs: Attention(64, head_dim=16, groups=8, rngs=rngs), ref)
  x = np.random.RandomState(1).randn(2, 4, 4, 64).astype(np.float32)
  with torch.no_grad():
    want = ref(_nchw(x)).numpy().transpose(0, 2, 3, 1)
  _close(ours(jnp.asarray(x)), want)


def test_added_kv_attention_like_simple_cross_attn_block():
  # Condition keys/values (add_k_proj/add_v_proj) come before the image's own.
  ref = _randomise(
    TorchAttention(
      query_dim=64,
      cross_attention_dim=64,
      heads=4,
      dim_head=16,
      added_kv_proj_dim=24,
      norm_num_groups=8,
      bias=True,
      upcast_softmax=True,
      processor=AttnAddedKVProcessor2_0(),
    )
  )
  ours = _load(
    lambda rngs: Attention(64, head_dim=16, groups=8, cross_attention_dim=24, rngs=rngs), ref
  )
  rng = np.random.RandomState(2)
  x = rng.randn(2, 4, 4, 64).astype(np.float32)
  ctx = rng.randn(2, 5, 24).astype(np.float32)
  with torch.no_grad():
    want = ref(_nchw(x), encoder_hidden_states=torch.from_numpy(ctx)).numpy()
  _close(ours(jnp.asarray(x), jnp.asarray(ctx)), want.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("flip,shift", [(True, 0), (False, 1)])
def test_time_embedding(flip, shift):
  proj = Timesteps(32, flip_sin_to_cos=flip, downscale_freq_shift=shift)
  ref = _randomise(TorchTimestepEmbedding(32, 128))
  ours = _load(lambda rngs: TimestepEmbedding(32, 128, rngs=rngs), ref)
  t = np.array([0, 3, 250, 999])
  with torch.no_grad():
    want = ref(proj(torch.from_numpy(t))).numpy()
  sinus = timestep_embedding(jnp.asarray(t), 32, flip_sin_to_cos=flip, freq_shift=shift)
  _close(ours(sinus), want)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_mapping_covers_every_parameter_and_every_torch_key(name, saved_unets):
  _, model = saved_unets(name)
  config = unet_config_from_diffusers(dict(model.config, _class_name=type(model).__name__))
  abstract = abstract_unet(config)
  table = param_table(abstract)
  ours = {p for p, _ in nnx.to_flat_state(nnx.state(abstract, nnx.Param))}
  assert {e.path for e in table} == ours  # every NNX parameter
  assert {e.torch_key for e in table} == set(model.state_dict())  # every torch key
  assert len(table) == len(ours) == len(model.state_dict())  # one to one
  n_torch = sum(p.numel() for p in model.parameters())
  assert sum(int(np.prod(e.shape)) for e in table) == n_torch


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_whole_unet_round_trip_matches_torch(name, saved_unets, tmp_path):
  src, model = saved_unets(name)
  out = convert_diffusers_unet(src, tmp_path / "converted")
  unet = load_unet(out)  # convert -> save -> load
  assert isinstance(unet, UNet)
  inputs = unet_inputs(name)
  want = torch_forward(model, inputs)
  got = jax_forward(unet, inputs)
  assert got.shape == want.shape == (2, 16, 16, TINY_CONFIGS[name][1]["out_channels"])
  _close(got, want)
  # The conditions matter: another class / context changes the output.
  if "class_labels" in inputs or "context" in inputs:
    other = dict(
      inputs, **{k: inputs[k][::-1].copy() for k in ("class_labels", "context") if k in inputs}
    )
    assert np.abs(jax_forward(unet, other) - got).max() > 1e-3
