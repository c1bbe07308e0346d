"""`residual_context = "centre_frame"`: the residual generator is conditioned on the clean
centre frame (the data's in training), and sampling runs the base generator's whole
trajectory first, then the residual frames with that finished frame."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.models.test_videofusion import record_residual_inputs
from videofusion_jax import diffusion
from videofusion_jax.models import presets
from videofusion_jax.models.conditioning import ConditionConfig
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling.generate import SamplerConfig, make_sample_fn, model_eps_fn
from videofusion_jax.training.step import StepConfig, loss_fn

SCHEDULE = diffusion.make_schedule("cosine", 1000)
B, N, H, C = 2, 4, 16, 3
CENTRE = diffusion.centre_index(N)


def _model():
  config = dataclasses.replace(presets.tiny(), objective="v", residual_context="centre_frame")
  return VideoFusion(config, rngs=nnx.Rngs(0))


def _video(seed=0):
  return jax.random.uniform(jax.random.key(seed), (B, N, H, H, C), minval=-1, maxval=1)


def test_the_residual_sees_the_given_centre_frame_and_the_base_does_not(monkeypatch):
  model = _model()
  seen = record_residual_inputs(monkeypatch)
  z, t = _video(), jnp.array([100, 900])
  frame, other = _video(1)[:, 0], _video(2)[:, 0]
  a = model(z, t, SCHEDULE.alphas_cumprod, centre_frame=frame)
  b = model(z, t, SCHEDULE.alphas_cumprod, centre_frame=other)
  context = seen[0][..., C:].reshape(B, N - 1, H, H, C)
  for i in range(N - 1):  # the frame itself, at every noise level, not an estimate
    np.testing.assert_array_equal(context[:, i], frame)
  np.testing.assert_array_equal(a.b_hat, b.b_hat)
  assert float(jnp.abs(a.r_hat - b.r_hat).max()) > 1e-4


def test_without_the_residual_the_centre_prediction_is_unchanged(monkeypatch):
  model = _model()
  z, t = _video(), jnp.array([300, 700])
  full = model(z, t, SCHEDULE.alphas_cumprod, centre_frame=_video(1)[:, 0])
  seen = record_residual_inputs(monkeypatch)
  centre_only = model(z, t, SCHEDULE.alphas_cumprod, residual=False)
  assert not seen  # the residual U-Net does not run at all
  np.testing.assert_array_equal(centre_only.eps[:, CENTRE], full.eps[:, CENTRE])


def test_a_missing_or_misshapen_centre_frame_is_named():
  model = _model()
  z, t = _video(), jnp.array([1, 2])
  with pytest.raises(ValueError, match="residual_context='centre_frame': pass centre_frame"):
    model(z, t, SCHEDULE.alphas_cumprod)
  with pytest.raises(ValueError, match=r"centre_frame has shape \(2, 8, 8, 3\)"):
    model(z, t, SCHEDULE.alphas_cumprod, centre_frame=jnp.zeros((B, 8, 8, C)))


def test_training_conditions_the_residual_on_the_datas_centre_frame():
  model = _model()
  video, key = _video(), jax.random.key(4)
  config = StepConfig(lam=model.config.lam)
  loss, _ = loss_fn(model, video, key, SCHEDULE, config)
  # loss_fn's draws, redone by hand with the centre frame given explicitly.
  t_key, base_key, residual_key, _ = jax.random.split(key, 4)
  t = jax.random.randint(t_key, (B,), 0, SCHEDULE.num_timesteps)
  eps = diffusion.decomposed_noise(base_key, residual_key, video.shape, config.lam)
  z_t = diffusion.q_sample(video, t, eps, SCHEDULE.alphas_cumprod)

  def loss_with(frame):
    out = model(z_t, t, SCHEDULE.alphas_cumprod, centre_frame=frame)
    return float(diffusion.decomposed_loss(eps, out.eps)["loss"])

  np.testing.assert_allclose(float(loss), loss_with(video[:, CENTRE]), rtol=1e-6)
  assert abs(float(loss) - loss_with(video[:, 0])) > 1e-6


def test_sampling_finishes_the_centre_first_and_conditions_the_rest_on_it():
  model = _model()
  graphdef, state = nnx.split(model)
  shape = (B, N, H, H, C)
  config = SamplerConfig(num_steps=4, eta=1.0)  # DDPM goes through the same two passes
  keys = jax.random.key(0), jax.random.key(1)
  fn = make_sample_fn(graphdef, shape, model.config.lam, config)
  video = fn(state, SCHEDULE, *keys)
  assert fn._cache_size() == 1 and video.shape == shape

  def run(**inputs):
    eps_fn = model_eps_fn(model, SCHEDULE, with_variance=False, **inputs)
    return diffusion.ddim_sample(eps_fn, SCHEDULE, shape, *keys, num_steps=4, eta=1.0)

  # The centre is the base generator's own sample, whatever the residual frames do ...
  centre = jax.jit(lambda: run(residual=False)[:, CENTRE])()
  np.testing.assert_allclose(video[:, CENTRE], centre, atol=1e-5)
  # ... and the residual frames are sampled given that finished centre frame.
  others = np.asarray(diffusion.other_frame_indices(N))
  given = jax.jit(lambda frame: run(centre_frame=frame)[:, others])
  np.testing.assert_allclose(video[:, others], given(centre), atol=1e-5)
  assert float(jnp.abs(given(-centre) - video[:, others]).max()) > 1e-3


def test_guidance_gives_both_branches_the_same_centre_frame():
  cond_config = ConditionConfig(kind="class", num_classes=3, embed_dim=32)
  model = VideoFusion(dataclasses.replace(_model().config, cond=cond_config), rngs=nnx.Rngs(0))
  z, t, frame = _video(), jnp.array([300, 700]), _video(1)[:, 0]
  cond = {"class_id": jnp.array([0, 2])}
  direct = lambda drop: (
    model(
      z, t, SCHEDULE.alphas_cumprod, centre_frame=frame, cond=dict(cond, drop=jnp.array(drop))
    ).eps
  )
  guided = model_eps_fn(
    model, SCHEDULE, with_variance=False, cond=cond, guidance_scale=3.0, centre_frame=frame
  )(z, t)  # one call on the doubled batch
  uncond = direct([True, True])
  np.testing.assert_allclose(guided, uncond + 3.0 * (direct([False, False]) - uncond), atol=1e-4)
