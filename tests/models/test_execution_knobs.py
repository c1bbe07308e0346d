"""Remat, residual chunks and bfloat16 compute change speed/memory, not the math."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models import presets
from videofusion_jax.models.videofusion import VideoFusion

SCHEDULE = diffusion.make_schedule("cosine", 1000)
Z = jax.random.normal(jax.random.key(1), (2, 3, 8, 8, 3))
T = jnp.array([10, 700])


def model_with(**knobs):
  return VideoFusion(dataclasses.replace(presets.tiny(), **knobs), rngs=nnx.Rngs(0))


@functools.lru_cache(maxsize=None)
def loss_and_grads(**knobs):
  """Jitted loss and gradients w.r.t. the stored parameters, once per knob setting."""
  graphdef, state = nnx.split(model_with(**knobs))

  def loss(state):
    model = nnx.merge(graphdef, state).in_compute_dtype()
    return jnp.mean(model(Z, T, SCHEDULE.alphas_cumprod).eps.astype(jnp.float32) ** 2)

  return jax.jit(jax.value_and_grad(loss))(state)


def test_remat_gives_the_same_loss_and_gradients():
  (l0, g0), (l1, g1) = loss_and_grads(), loss_and_grads(remat=True)
  np.testing.assert_allclose(l0, l1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  graphdef, state = nnx.split(model_with(remat=True))
  jaxpr = str(
    jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(Z, T, SCHEDULE.alphas_cumprod).eps)(state)
  )
  assert "remat" in jaxpr or "checkpoint" in jaxpr


def test_residual_chunks_give_the_same_prediction():
  one = model_with()(Z, T, SCHEDULE.alphas_cumprod).eps
  two = model_with(residual_chunks=2)(Z, T, SCHEDULE.alphas_cumprod).eps
  np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="residual_chunks=3 does not divide the 2 clips"):
    model_with(residual_chunks=3)(Z, T, SCHEDULE.alphas_cumprod)


def test_bfloat16_compute_keeps_float32_parameters_and_gradients():
  model = model_with(dtype="bfloat16")
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  low = model.in_compute_dtype()
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(nnx.state(low, nnx.Param)))
  loss, grads = loss_and_grads(dtype="bfloat16")
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  ref_loss, _ = loss_and_grads()
  np.testing.assert_allclose(loss, ref_loss, rtol=3e-2)  # bf16: ~3 significant digits
  assert float(loss) != float(ref_loss)  # and it really computed in bfloat16


def test_unknown_knob_values_are_refused_by_name():
  with pytest.raises(ValueError, match="model.dtype='float16'"):
    model_with(dtype="float16")
  with pytest.raises(ValueError, match="model.remat_policy='keep_all'"):
    model_with(remat_policy="keep_all")
  with pytest.raises(ValueError, match="model.attention='flash'"):
    model_with(attention="flash")


def test_cudnn_attention_off_a_gpu_computes_what_xla_does():
  z = Z[:, :2]  # 1 residual frame: the temporal attention has an odd length either way
  xla = model_with()(z, T, SCHEDULE.alphas_cumprod).eps
  cudnn = model_with(attention="cudnn")(z, T, SCHEDULE.alphas_cumprod).eps
  np.testing.assert_array_equal(xla, cudnn)


@pytest.fixture
def pretend_gpu(monkeypatch):
  """A 'gpu' backend whose cuDNN attention is XLA's, recording each call's choice (and
  refusing head dims of 16, as cuDNN refuses some shapes); cuDNN from 8 keys on, so
  that test-sized sequences reach it."""
  real = jax.nn.dot_product_attention
  calls = []

  def fake(q, k, v, bias=None, implementation=None):
    calls.append((implementation, q.shape[1], k.shape[1], q.dtype, bias is not None))
    if implementation == "cudnn" and q.shape[-1] == 16:
      raise NotImplementedError("The head dim must be <= 256 and a multiple of 8")
    return real(q, k, v, bias=bias)

  from videofusion_jax.models import attention

  monkeypatch.setattr(attention, "CUDNN_MIN_KEYS", 8)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(jax.nn, "dot_product_attention", fake)
  return calls


def test_cudnn_attention_is_asked_for_exactly_where_cudnn_can_take_it(pretend_gpu):
  from videofusion_jax.models.attention import attention_implementation, multi_head_attention

  x = jax.random.normal(jax.random.key(0), (2, 16, 64), jnp.bfloat16)
  bias15 = jnp.zeros((1, 2, 15, 15), jnp.bfloat16)
  want = multi_head_attention(x, x, x, heads=2)  # outside the context: XLA
  with attention_implementation("cudnn"):
    np.testing.assert_array_equal(multi_head_attention(x, x, x, heads=2), want)
    x32 = x.astype(jnp.float32)
    multi_head_attention(x32, x32, x32, heads=2)  # cuDNN: 16-bit only
    multi_head_attention(x[:, :15], x[:, :15], x[:, :15], heads=2, bias=bias15)
    multi_head_attention(x[:, :14], x[:, :14], x[:, :14], heads=2, bias=bias15[..., 1:, 1:])
    mask = jnp.zeros((2, 1, 1, 16), jnp.bfloat16)  # a condition-token mask: (B, 1, 1, Tk)
    multi_head_attention(x, x, x, heads=2, bias=mask)
    multi_head_attention(x[:, :4], x[:, :4], x[:, :4], heads=2)  # 4 keys: too few
    refused = multi_head_attention(x, x, x, heads=4)  # head dim 16: tried, refused
  np.testing.assert_array_equal(refused, multi_head_attention(x, x, x, heads=4))
  asked = [(impl, tq, dtype.name, has_bias) for impl, tq, _, dtype, has_bias in pretend_gpu]
  assert asked == [
    (None, 16, "bfloat16", False),  # outside
    ("cudnn", 16, "bfloat16", False),  # taken
    (None, 16, "float32", False),  # float32: not asked
    (None, 15, "bfloat16", True),  # odd with a bias: not asked
    ("cudnn", 14, "bfloat16", True),  # even with a bias: taken
    (None, 16, "bfloat16", True),  # broadcast bias: not asked
    (None, 4, "bfloat16", False),  # short: not asked
    ("cudnn", 16, "bfloat16", False),
    (None, 16, "bfloat16", False),  # refused: XLA
    (None, 16, "bfloat16", False),
  ]  # outside again


def test_the_models_unets_compute_their_attention_as_configured(pretend_gpu):
  """VideoFusion's base and residual U-Nets take `model.attention` to every spatial and
  temporal attention layer (the tiny preset: 32-channel heads, 3 residual frames). The
  choice is made while tracing, so tracing the call (`eval_shape`) is enough."""
  z = jax.random.normal(jax.random.key(1), (1, 4, 8, 8, 3))
  trace = lambda model: jax.eval_shape(lambda: model(z, T[:1], SCHEDULE.alphas_cumprod))
  trace(model_with(dtype="bfloat16", attention="cudnn").in_compute_dtype())
  spatial = [c for c in pretend_gpu if c[1] == c[2] == 16]  # 4x4 tokens
  temporal = [c for c in pretend_gpu if c[1] == 3]
  assert spatial and all(c[0] == "cudnn" for c in spatial)
  assert temporal and all(c[0] is None for c in temporal)  # 3 frames with their bias
  del pretend_gpu[:]
  trace(model_with(dtype="bfloat16").in_compute_dtype())
  assert pretend_gpu and all(c[0] is None for c in pretend_gpu)


def _model_configs(**knobs):
  """A small config of each model kind with execution knobs: VideoFusion, VDM*, SuperRes."""
  from videofusion_jax.models.superres import SuperResConfig
  from videofusion_jax.models.unet import UNetConfig
  from videofusion_jax.models.vdm import VDMConfig

  unet = dataclasses.replace(presets.tiny().base, temporal="attention")
  sr_unet = UNetConfig(
    block_out_channels=(16, 32),
    layers_per_block=1,
    attention_levels=(1,),
    attention_head_dim=16,
    norm_num_groups=8,
  )
  return [
    dataclasses.replace(presets.tiny(), **knobs),
    VDMConfig(unet=unet, **knobs),
    SuperResConfig(unet=sr_unet, image_size=16, low_res_size=8, **knobs),
  ]


def _mixed_precision_models(**knobs):
  """Each model kind, built: it stores parameters in `param_dtype`, computes in `dtype`."""
  from videofusion_jax.models.superres import SuperRes
  from videofusion_jax.models.vdm import VDM

  kinds = (VideoFusion, VDM, SuperRes)
  return [kind(config, rngs=nnx.Rngs(0)) for kind, config in zip(kinds, _model_configs(**knobs))]


def _param_dtypes(model):
  return {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}


def test_every_model_stores_in_param_dtype_and_computes_in_dtype():
  for model in _mixed_precision_models(dtype="bfloat16", param_dtype="bfloat16"):
    assert _param_dtypes(model) == {jnp.dtype(jnp.bfloat16)}, type(model).__name__
    assert model.in_compute_dtype() is model  # nothing to cast
  for model in _mixed_precision_models(dtype="bfloat16"):
    assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}, type(model).__name__
    assert _param_dtypes(model.in_compute_dtype()) == {jnp.dtype(jnp.bfloat16)}
    assert _param_dtypes(model) == {jnp.dtype(jnp.float32)}  # the stored copy is kept


@pytest.mark.parametrize(
  "bad, message",
  [
    (dict(dtype="float16"), "model.dtype='float16'"),
    (dict(param_dtype="int8"), "model.param_dtype='int8'"),
    (dict(remat_policy="keep_all"), "model.remat_policy='keep_all'"),
    (dict(attention="flash"), "model.attention='flash'"),
  ],
)
def test_every_model_config_refuses_bad_knobs_by_name(bad, message):
  """VideoFusion, VDM* and SuperRes validate their execution knobs the same way."""
  for config in _model_configs(**bad):
    with pytest.raises(ValueError, match=message):
      config.validate()
