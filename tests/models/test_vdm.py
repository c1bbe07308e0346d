"""VDM* (the Table 4 baseline): shapes, frames mixed by temporal attention only where
the base generator has spatial attention, and VideoFusion's base network unmixed."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models import presets
from videofusion_jax.models.vdm import VDM, VDMConfig
from videofusion_jax.models.videofusion import VideoFusion

SCHEDULE = diffusion.make_schedule("cosine", 1000)
B, N, H, C = 2, 4, 16, 3


def tiny(**changes) -> VDMConfig:
  unet = dataclasses.replace(presets.tiny().base, temporal="attention")
  return dataclasses.replace(VDMConfig(unet=unet), **changes)


def _video(seed=0):
  return jax.random.normal(jax.random.key(seed), (B, N, H, H, C))


def _perturb_temporal(model):
  """Give the zero-initialised temporal output layers weights so they mix frames."""
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param) and "to_out" in path and "temp_attention" in path:
      var[...] = 0.05 * jax.random.normal(jax.random.key(len(path)), var[...].shape)


@pytest.fixture(scope="module")
def vdm():
  model = VDM(tiny(), rngs=nnx.Rngs(0))
  _perturb_temporal(model)
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, z, t: nnx.merge(graphdef, s)(z, t, SCHEDULE.alphas_cumprod).eps)
  return model, lambda z, t: fn(state, z, t)


def test_eps_for_every_frame_and_no_decomposition_fields(vdm):
  model, eps = vdm
  out = nnx.eval_shape(lambda m: m(_video(), jnp.array([10, 500]), SCHEDULE.alphas_cumprod), model)
  assert out.eps.shape == (B, N, H, H, C) and out.eps.dtype == jnp.float32
  assert out.b_hat is None and out.r_hat is None and out.var_values is None
  assert bool(jnp.all(jnp.isfinite(eps(_video(), jnp.array([10, 500])))))


def test_temporal_attention_mixes_frames_at_attention_stages_only(vdm):
  model, eps = vdm
  t = jnp.array([100, 900])
  z = _video()
  z2 = z.at[:, 0].set(_video(seed=1)[:, 0])  # change frame 0 only
  a, b = eps(z, t), eps(z2, t)
  # Every other frame's prediction moves: information crossed the frame axis.
  for i in range(1, N):
    assert float(jnp.abs(a[:, i] - b[:, i]).max()) > 1e-4, i
  # Clips stay independent: the second clip is untouched by the first clip's frames.
  z3 = z.at[0, 0].set(_video(seed=1)[0, 0])
  np.testing.assert_allclose(eps(z3, t)[1], a[1], atol=1e-6)
  # Ho et al.'s layout: temporal layers follow spatial attention (stage 1 and the mid
  # block of the tiny U-Net), none at stage 0, which has no spatial attention.
  unet = model.unet
  assert unet.down_blocks[0].temp_mixers is None and unet.up_blocks[-1].temp_mixers is None
  assert unet.down_blocks[1].temp_mixers is not None and unet.mid_block.temp_mixers is not None
  rel = unet.down_blocks[1].temp_mixers[0].temp_attention.rel_pos_bias
  assert rel.embedding[...].shape[0] == 2 * 32 + 1  # one bias per head and distance


def test_without_temporal_layers_frames_would_be_independent():
  """The control for the test above: zero temporal outputs (the initial state) leave
  each frame's prediction a function of that frame alone."""
  graphdef, state = nnx.split(VDM(tiny(), rngs=nnx.Rngs(0)))
  t = jnp.array([100, 900])
  run = jax.jit(lambda z: nnx.merge(graphdef, state)(z, t, SCHEDULE.alphas_cumprod).eps)
  z = _video()
  a, b = run(z), run(z.at[:, 0].set(_video(seed=1)[:, 0]))
  np.testing.assert_allclose(a[:, 1:], b[:, 1:], atol=1e-5)


def test_videofusion_base_prediction_ignores_the_other_frames():
  vf = VideoFusion(presets.tiny(), rngs=nnx.Rngs(0))
  _perturb_temporal(vf)
  t = jnp.array([100, 900])
  z = _video()
  c = diffusion.centre_index(N)
  z2 = z.at[:, 0].set(_video(seed=1)[:, 0])
  graphdef, state = nnx.split(vf)
  run = jax.jit(lambda z: nnx.merge(graphdef, state)(z, t, SCHEDULE.alphas_cumprod))
  a, b = run(z), run(z2)
  np.testing.assert_array_equal(a.eps[:, c], b.eps[:, c])
  assert float(jnp.abs(a.eps[:, 3] - b.eps[:, 3]).max()) > 1e-4  # residual frames mix


def test_all_placement_adds_temporal_layers_everywhere_and_checks_name_fields():
  model = nnx.eval_shape(lambda: VDM(tiny(temporal_placement="all"), rngs=nnx.Rngs(0)))
  assert model.unet.down_blocks[0].temp_mixers is not None
  with pytest.raises(ValueError, match="model.temporal_placement='diag'"):
    tiny(temporal_placement="diag").validate()
  with pytest.raises(ValueError, match="model.base.temporal='none'"):
    dataclasses.replace(tiny(), unet=presets.tiny().base).validate()
  with pytest.raises(ValueError, match=r"z_t has 1 frame\(s\)"):
    tiny().check_video((1, 1, 16, 16, 3))
  with pytest.raises(ValueError, match="z_t has 4 channels; model.channels=3"):
    tiny().check_video((1, 4, 16, 16, 4))
  with pytest.raises(ValueError, match="multiples of 2"):
    tiny().check_video((1, 4, 15, 15, 3))


def test_v_objective_and_learned_variance_split_channels():
  model = nnx.eval_shape(lambda: VDM(tiny(objective="v", learned_variance=True), rngs=nnx.Rngs(1)))
  out = nnx.eval_shape(lambda m: m(_video(), jnp.array([3, 999]), SCHEDULE.alphas_cumprod), model)
  assert out.eps.shape == (B, N, H, H, C) and out.var_values.shape == (B, N, H, H, C)


def test_config_file_selects_vdm_on_the_base_generator_widths():
  from configs import vdm as vdm_config_file
  from videofusion_jax.models.from_config import model_spec

  spec = model_spec(vdm_config_file.get_config())
  assert spec.cls is VDM
  assert tuple(spec.config.unet.block_out_channels) == (192, 384, 576, 960)  # Table 8 base
  assert spec.config.unet.temporal == "attention"
  demo = vdm_config_file.get_config("demo")
  assert model_spec(demo).config.unet.block_out_channels == (32, 64)
  demo.diffusion.noise_mode = "decomposed"
  with pytest.raises(ValueError, match="diffusion.noise_mode='decomposed' with model.kind"):
    model_spec(demo)


@pytest.mark.slow
def test_vdm_config_trains_and_samples_with_the_shared_loop(tmp_path):
  """configs/vdm.py:demo through the real train and sample functions."""
  from configs import vdm as vdm_config_file
  from videofusion_jax.sampling import generate
  from videofusion_jax.training.loop import train

  c = vdm_config_file.get_config("demo")
  c.data.num_frames, c.train.batch_size, c.train.num_steps = 4, 2, 2
  c.train.log_every, c.train.checkpoint_every, c.train.tensorboard = 1, 2, False
  c.sample.num_steps, c.sample.num_videos, c.sample.batch_size = 2, 2, 2
  metrics = train(c, str(tmp_path))
  assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
  paths = generate.sample(c, str(tmp_path))
  assert any(p.suffix == ".mp4" for p in paths)
