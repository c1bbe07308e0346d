"""VideoFusion wiring: what each generator sees, call counts, gradients, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models import presets
from videofusion_jax.models.unet import UNet
from videofusion_jax.models.videofusion import VideoFusion, VideoFusionConfig

SCHEDULE = diffusion.make_schedule("cosine", 1000)
B, N, H, C = 2, 4, 16, 3


def tiny(**changes) -> VideoFusionConfig:
  return dataclasses.replace(presets.tiny(), **changes)


def _video(seed=0):
  return jax.random.normal(jax.random.key(seed), (B, N, H, H, C))


def _perturb_temporal(model):
  """Give the zero-initialised temporal output layers weights so they mix frames."""
  for path, var in nnx.iter_graph(model):
    if isinstance(var, nnx.Param) and "to_out" in path and "temp_attention" in path:
      var[...] = 0.05 * jax.random.normal(jax.random.key(len(path)), var[...].shape)


def test_output_shapes_and_centre_frame_is_base_prediction():
  model = VideoFusion(tiny(), rngs=nnx.Rngs(0))
  out = model(_video(), jnp.array([10, 500]), SCHEDULE.alphas_cumprod)
  c = diffusion.centre_index(N)
  assert out.eps.shape == (B, N, H, H, C)
  assert out.b_hat.shape == (B, H, H, C) and out.r_hat.shape == (B, N - 1, H, H, C)
  np.testing.assert_array_equal(out.eps[:, c], out.b_hat)


def test_base_generator_sees_only_the_centre_frame():
  model = VideoFusion(tiny(), rngs=nnx.Rngs(0))
  t = jnp.array([100, 900])
  z = _video()
  c = diffusion.centre_index(N)
  others = jnp.arange(N) != c
  z2 = jnp.where(others[None, :, None, None, None], _video(seed=1), z)
  a = model(z, t, SCHEDULE.alphas_cumprod)
  b = model(z2, t, SCHEDULE.alphas_cumprod)
  np.testing.assert_array_equal(a.b_hat, b.b_hat)
  assert float(jnp.abs(a.r_hat - b.r_hat).max()) > 1e-4


@pytest.mark.parametrize(
  "temporal,context,independent",
  [
    ("none", "none", True),  # the paper's per-frame residual generator
    ("attention", "none", False),  # temporal attention ties the frames
  ],
)
def test_residual_frames_interact_only_through_temporal_layers(temporal, context, independent):
  cfg = tiny(
    residual=dataclasses.replace(presets.tiny().residual, temporal=temporal),
    residual_context=context,
  )
  model = VideoFusion(cfg, rngs=nnx.Rngs(0))
  _perturb_temporal(model)
  t = jnp.array([300, 300])
  z = _video()
  z2 = z.at[:, 0].add(1.0)  # frame 0 is a residual frame (centre is 1 for N=4)
  a = model(z, t, SCHEDULE.alphas_cumprod).r_hat
  b = model(z2, t, SCHEDULE.alphas_cumprod).r_hat
  change = float(jnp.abs(a[:, 1:] - b[:, 1:]).max())  # the other residual frames
  assert (change < 1e-5) if independent else (change > 1e-4)


def test_centre_estimate_reaches_the_residual_generator():
  model = VideoFusion(
    tiny(residual=dataclasses.replace(presets.tiny().residual, temporal="none")), rngs=nnx.Rngs(0)
  )
  c = diffusion.centre_index(N)
  t = jnp.array([300, 300])
  z = _video()
  a = model(z, t, SCHEDULE.alphas_cumprod).r_hat
  b = model(z.at[:, c].add(1.0), t, SCHEDULE.alphas_cumprod).r_hat
  assert float(jnp.abs(a - b).max()) > 1e-4
  assert model.residual.config.in_channels == 2 * C


def record_residual_inputs(monkeypatch) -> list:
  """The inputs (B*(N-1), H, W, C + context) of every residual U-Net call, appended to
  the returned list."""
  seen = []
  original = UNet.__call__

  def recording(self, x, *args, **kwargs):
    if self.config.frame_conditioned:
      seen.append(x)
    return original(self, x, *args, **kwargs)

  monkeypatch.setattr(UNet, "__call__", recording)
  return seen


@pytest.mark.parametrize("context", ["centre_estimate", "centre_x0"])
def test_residual_generator_context_is_the_centre_estimate_at_its_scale(context, monkeypatch):
  """centre_estimate: sqrt(ab) x0_hat[c] = z_c - sqrt(1 - ab) b_hat (fades to 0 at high
  noise); centre_x0: x0_hat[c] clipped to [-1, 1], the same scale at every t."""
  model = VideoFusion(tiny(objective="v", residual_context=context), rngs=nnx.Rngs(0))
  seen = record_residual_inputs(monkeypatch)
  c, t = diffusion.centre_index(N), jnp.array([50, 990])
  z = _video()
  out = model(z, t, SCHEDULE.alphas_cumprod)
  ab = SCHEDULE.alphas_cumprod[t][:, None, None, None]
  want = z[:, c] - jnp.sqrt(1 - ab) * out.b_hat
  if context == "centre_x0":
    want = jnp.clip(want / jnp.sqrt(ab), -1.0, 1.0)
    assert float(jnp.abs(want[1]).mean()) > 0.3  # t = 990: still O(1), not faded
  got = seen[0][..., C:].reshape(B, N - 1, H, H, C)
  for i in range(N - 1):
    np.testing.assert_allclose(got[:, i], want, atol=1e-5)


def test_one_base_and_one_residual_call_per_step(monkeypatch):
  model = VideoFusion(tiny(), rngs=nnx.Rngs(0))
  calls = []
  original = UNet.__call__

  def counting(self, x, *args, **kwargs):
    calls.append(("residual" if self.config.frame_conditioned else "base", x.shape[0]))
    return original(self, x, *args, **kwargs)

  monkeypatch.setattr(UNet, "__call__", counting)
  graphdef, state = nnx.split(model)

  @jax.jit
  def step(state, z, t):
    return nnx.merge(graphdef, state)(z, t, SCHEDULE.alphas_cumprod).eps

  step(state, _video(), jnp.array([1, 2]))
  # The residual generator runs once over all B * (N - 1) frames, folded into the batch.
  assert calls == [("base", B), ("residual", B * (N - 1))]


@pytest.mark.parametrize("stop", [True, False])
def test_residual_loss_reaches_base_only_without_stop_gradient(stop):
  model = VideoFusion(tiny(), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  eps = _video(seed=3)
  t = jnp.array([200, 700])
  z = diffusion.q_sample(_video(seed=4), t, eps, SCHEDULE.alphas_cumprod)

  @jax.jit
  def grad_sizes(params, weights):
    """|grad| summed per sub-module of weights . (centre loss, residual loss)."""

    def weighted(params):
      out = nnx.merge(graphdef, params)(z, t, SCHEDULE.alphas_cumprod, stop_base_grad=stop)
      losses = diffusion.decomposed_loss(eps, out.eps)
      return weights[0] * losses["loss_centre"] + weights[1] * losses["loss_residual"]

    g = jax.grad(weighted)(params)
    return {
      part: sum(jnp.abs(x).sum() for x in jax.tree.leaves(g[part])) for part in ("base", "residual")
    }

  sizes = {
    name: jax.device_get(grad_sizes(params, jnp.array(w)))  # one compile, two runs
    for name, w in (("loss_centre", [1.0, 0.0]), ("loss_residual", [0.0, 1.0]))
  }
  assert sizes["loss_residual"]["residual"] > 0
  assert (sizes["loss_residual"]["base"] == 0.0) if stop else (sizes["loss_residual"]["base"] > 0)
  assert sizes["loss_centre"]["base"] > 0 and sizes["loss_centre"]["residual"] == 0.0


@pytest.mark.parametrize(
  "shape,match",
  [
    ((B, H, H, C), "expected \\(B, N, H, W, C\\)"),
    ((B, 1, H, H, C), "num_frames >= 2"),
    ((B, N, H, H, 4), "channels"),
    ((B, N, 9, 9, C), "multiples of 2"),
  ],
)
def test_bad_video_shapes_are_named(shape, match):
  with pytest.raises(ValueError, match=match):
    tiny().check_video(shape)


@pytest.mark.parametrize(
  "change,match",
  [
    (dict(lam=1.5), "lam=1.5"),
    (dict(objective="x0"), "objective"),
    (dict(residual_context="clip2"), "residual_context"),
  ],
)
def test_bad_model_configs_are_named(change, match):
  with pytest.raises(ValueError, match=match):
    VideoFusion(tiny(**change), rngs=nnx.Rngs(0))
