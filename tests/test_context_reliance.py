"""The context-reliance diagnostic measures the model's real residual loss, sees the
centre context when it is there, and refuses what it cannot measure."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from configs import demo
from videofusion_jax import diffusion, parallel
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.models.from_config import model_spec, videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.tools import context_reliance as cr
from videofusion_jax.training.loop import create_state


def _config():
  config = demo.get_config()
  config.data.num_frames = 4
  config.model.residual_context = "centre_x0"  # the running estimate; centre_frame below
  return config


def _videos(n=4):
  rng = np.random.default_rng(0)
  return rng.uniform(-1, 1, (n, 4, 16, 16, 3)).astype(np.float32)


def test_true_context_loss_is_the_training_loss_and_swapping_the_context_changes_it():
  model = VideoFusion(videofusion_config(_config()), rngs=nnx.Rngs(0))
  schedule = diffusion.make_schedule("cosine", 1000)
  videos = jax.numpy.asarray(_videos())
  key = jax.random.key(3)
  # What the train step computes (Eq. 14 through the model's own call) at t = 600.
  base_key, residual_key = jax.random.split(key)
  eps = diffusion.decomposed_noise(base_key, residual_key, videos.shape, model.config.lam)
  t = jax.numpy.full((4,), 600, jax.numpy.int32)
  z_t = diffusion.q_sample(videos, t, eps, schedule.alphas_cumprod)
  expected = diffusion.decomposed_loss(eps, model(z_t, t, schedule.alphas_cumprod).eps)
  true = cr.residual_loss(model, videos, 600, schedule.alphas_cumprod, key, swap_context=False)
  swapped = cr.residual_loss(model, videos, 600, schedule.alphas_cumprod, key, swap_context=True)
  np.testing.assert_allclose(float(true), float(expected["loss_residual"]), rtol=1e-6)
  assert abs(float(swapped) / float(true) - 1) > 1e-4  # the context reaches the residual


def test_a_centre_frame_model_is_measured_with_the_clips_own_and_swapped_centre_frames():
  config = dataclasses.replace(videofusion_config(_config()), residual_context="centre_frame")
  model = VideoFusion(config, rngs=nnx.Rngs(0))
  schedule = diffusion.make_schedule("cosine", 1000)
  videos = jax.numpy.asarray(_videos())
  key = jax.random.key(3)
  base_key, residual_key = jax.random.split(key)
  eps = diffusion.decomposed_noise(base_key, residual_key, videos.shape, config.lam)
  t = jax.numpy.full((4,), 600, jax.numpy.int32)
  z_t = diffusion.q_sample(videos, t, eps, schedule.alphas_cumprod)
  centre = videos[:, diffusion.centre_index(4)]

  def expected(frame):
    out = model(z_t, t, schedule.alphas_cumprod, centre_frame=frame)
    return float(diffusion.decomposed_loss(eps, out.eps)["loss_residual"])

  for swap, frame in ((False, centre), (True, jax.numpy.roll(centre, 1, axis=0))):
    got = cr.residual_loss(model, videos, 600, schedule.alphas_cumprod, key, swap_context=swap)
    np.testing.assert_allclose(float(got), expected(frame), rtol=1e-6)


def test_models_without_a_centre_context_are_refused():
  config = _config()
  graphdef, params = nnx.split(VideoFusion(videofusion_config(config), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="at least 2"):
    cr.context_reliance(
      graphdef, params, _videos(1), diffusion.make_schedule("cosine", 1000).alphas_cumprod
    )
  none = dataclasses.replace(videofusion_config(config), residual_context="none")
  with pytest.raises(ValueError, match="residual_context='none'"):
    cr.check_model(VideoFusion(none, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="measured on VideoFusion"):
    cr.check_model(object())


def test_workdir_measurement_reads_each_saved_step_and_names_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints/ folder"):
    cr.measure_workdir(tmp_path / "nowhere")
  assert not (tmp_path / "nowhere").exists()  # a typo'd workdir is not created
  config = _config()
  spec = model_spec(config)
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  rules = parallel.rules_from_config(config.mesh.rules)
  ts = create_state(spec, config, mesh, rules)
  ckpt = Checkpoints(tmp_path)
  ckpt.save(5, ts.state, ts.ema, None, config)
  ckpt.close()
  with pytest.raises(ValueError, match=r"\[7\] not saved .* saved: \[5\]"):
    cr.measure_workdir(tmp_path, [7])
  result = cr.measure_workdir(tmp_path, num_clips=4, timesteps=(100, 900), repeats=1)
  assert list(result) == [5] and list(result[5]) == [100, 900]
  for row in result[5].values():
    assert row["true"] > 0 and row["ratio"] == pytest.approx(row["swapped"] / row["true"])
  table = cr.format_table(result)
  assert "t=900" in table and table.splitlines()[-1].split()[0] == "5"
