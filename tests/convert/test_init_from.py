"""train.init_base_from / init_residual_from: training starts from a converted image U-Net."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from videofusion_jax.configs import demo
from videofusion_jax.convert import convert_diffusers_unet, load_converted, load_unet
from videofusion_jax.models.from_config import videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.training import init_from
from videofusion_jax.training.loop import train

# diffusers' UNet2DModel with the layout of the demo's tiny base generator.
TINY_DEMO_BASE = dict(
  sample_size=16,
  in_channels=3,
  out_channels=3,
  block_out_channels=(32, 64),
  layers_per_block=1,
  down_block_types=("DownBlock2D", "AttnDownBlock2D"),
  up_block_types=("AttnUpBlock2D", "UpBlock2D"),
  attention_head_dim=32,
  norm_num_groups=8,
  attn_norm_num_groups=8,
  resnet_time_scale_shift="scale_shift",
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  torch.manual_seed(0)
  model = diffusers.UNet2DModel(**TINY_DEMO_BASE)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  root = tmp_path_factory.mktemp("init_from")
  model.save_pretrained(root / "src")
  return convert_diffusers_unet(root / "src", root / "converted")


def tiny_config(converted_dir, num_steps=1):
  config = demo.get_config("setting=tiny")
  config.data.num_clips = 16
  config.train.num_steps = num_steps
  config.train.checkpoint_every = 1
  config.train.init_base_from = str(converted_dir)
  return config


def _fresh_state(vf, seed=0):
  """What create_state builds: (model, optimizer) state and an EMA copy of the params."""
  model = VideoFusion(vf, rngs=nnx.Rngs(seed))
  state = nnx.state((model, nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)))
  return state, jax.tree.map(jnp.copy, nnx.state(model, nnx.Param)), model


def _flat(tree):
  """'a/0/b' -> array; list indices and dict keys alike (a restore gives '0' for 0)."""
  out = {}
  for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path]
    out["/".join(keys[:-1] if keys[-1] == "value" else keys)] = np.asarray(v)
  return out


def test_state_at_step_0_holds_the_converted_base(converted):
  config = tiny_config(converted)
  vf = videofusion_config(config)
  state, ema, _ = _fresh_state(vf)
  residual_before = _flat(nnx.to_pure_dict(ema["residual"]))
  state, ema = init_from.apply(state, ema, vf, config.train)

  _, params = load_converted(converted)
  want = _flat(params)
  for tree in (nnx.to_pure_dict(state[0]["base"]), nnx.to_pure_dict(ema["base"])):
    got = _flat(tree)
    assert got.keys() == want.keys() and len(want) > 50
    for k in want:
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  residual_after = _flat(nnx.to_pure_dict(ema["residual"]))  # residual stays random
  assert all(np.array_equal(residual_after[k], v) for k, v in residual_before.items())


@pytest.mark.slow  # a whole train() run; step 0 is checked above
def test_one_training_step_from_a_converted_base(converted, tmp_path):
  # The real train() with the hook in create_state. Warmup starts the learning rate at 0,
  # so the step-1 checkpoint still holds the step-0 parameters: the converted base.
  config = tiny_config(converted)
  assert config.optim.warmup_steps > 0 and config.optim.weight_decay == 0
  metrics = train(config, str(tmp_path))
  assert np.isfinite(metrics["loss"])
  mngr = ocp.CheckpointManager(tmp_path / "checkpoints")
  saved = mngr.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  mngr.close()
  _, params = load_converted(converted)
  want = _flat(params)
  got = _flat(saved["0"]["base"])
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_mismatching_model_base_fails_naming_the_fields(converted):
  config = tiny_config(converted)
  config.model.base.block_out_channels = (32, 32)
  config.model.learned_variance = True
  vf = videofusion_config(config)
  _, ema, _ = _fresh_state(vf)
  with pytest.raises(
    ValueError,
    match=r"train\.init_base_from=.*does not match model\.base; "
    r"differing fields: out_channels: converted 3, config 6 \(set by "
    r"data\.channels and model\.learned_variance\); block_out_channels: "
    r"converted \(32, 64\), config \(32, 32\)",
  ):
    init_from.initial_params(vf, config.train, ema)


def test_missing_converted_folder_is_named(tmp_path):
  config = tiny_config(tmp_path / "nowhere")
  vf = videofusion_config(config)
  with pytest.raises(FileNotFoundError, match=r"nowhere is not a converted U-Net"):
    init_from.initial_params(vf, config.train, None)


def test_residual_from_the_image_model_is_that_model_per_frame_at_step_0(converted):
  # The rule (init_from's docstring): copied layers, zero context channels in conv_in,
  # zero frame-embedding output, identity temporal layers.
  config = tiny_config(converted)
  config.train.init_base_from = ""
  config.train.init_residual_from = str(converted)
  vf = videofusion_config(config)
  assert vf.residual_unet().in_channels == 6 and vf.residual_unet().temporal == "attention"
  state, ema, model = _fresh_state(vf)
  state, ema = init_from.apply(state, ema, vf, config.train)
  nnx.update(model, ema)

  kernel = np.asarray(model.residual.conv_in.kernel[...])
  image = load_unet(converted)
  np.testing.assert_array_equal(kernel[:, :, :3], np.asarray(image.conv_in.kernel[...]))
  assert not kernel[:, :, 3:].any()
  assert not np.asarray(model.residual.frame_embedding.linear_2.kernel[...]).any()

  frames = 3
  rng = np.random.RandomState(0)
  x = jnp.asarray(rng.randn(2 * frames, 16, 16, 3).astype(np.float32))
  context = jnp.asarray(rng.randn(2 * frames, 16, 16, 3).astype(np.float32))
  t = jnp.asarray([5, 5, 5, 800, 800, 800])
  got = model.residual(
    jnp.concatenate([x, context], -1),
    t,
    frame_index=jnp.asarray([0, 2, 3, 0, 2, 3]),
    num_frames=frames,
  )
  np.testing.assert_allclose(got, image(x, t), rtol=1e-4, atol=1e-5)


def test_residual_rule_names_every_converted_layer_of_another_shape():
  converted = {
    ("conv_out", "kernel"): np.zeros((3, 3, 32, 3), np.float32),
    ("conv_out", "bias"): np.zeros((3,), np.float32),
    ("conv_norm_out", "scale"): np.zeros((32,), np.float32),
  }
  fresh = {
    ("conv_out", "kernel"): np.zeros((3, 3, 32, 6), np.float32),
    ("conv_out", "bias"): np.zeros((6,), np.float32),
    ("conv_norm_out", "scale"): np.zeros((32,), np.float32),
  }
  with pytest.raises(ValueError) as error:
    init_from.residual_params(converted, fresh)
  message = str(error.value)
  assert message.startswith("2 converted parameter(s)")
  assert "conv_out.kernel: converted (3, 3, 32, 3), residual generator (3, 3, 32, 6)" in message
  assert "conv_out.bias: converted (3,), residual generator (6,)" in message
  assert "conv_norm_out" not in message
