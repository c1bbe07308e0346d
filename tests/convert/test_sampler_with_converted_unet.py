"""Issue 7: diffusers' DDIMScheduler driving a torch U-Net and our DDIM sampler driving
the same U-Net converted to JAX give the same image from the same noise.

The update rules alone are compared step by step with a fake model in
tests/diffusion/test_diffusers_scheduler_parity.py (conventions documented there); here
the model is a real converted network, so conversion and sampler errors would add up.
Our sampler works on videos (B, N, H, W, C); with lam = 0 and standard noise the N
frames are independent images, folded into the U-Net's batch as diffusers' images.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from videofusion_jax import diffusion  # noqa: E402
from videofusion_jax.convert import convert_diffusers_unet, load_unet  # noqa: E402
from videofusion_jax.diffusion import samplers  # noqa: E402
from videofusion_jax.diffusion.noise_sharing import draw_noise  # noqa: E402

SHAPE = (1, 2, 16, 16, 3)  # one video of two 16x16 frames = two diffusers images
KEYS = (jax.random.key(4), jax.random.key(5))


def test_ddim_with_a_converted_unet_gives_diffusers_image(saved_unets, tmp_path):
  src, model = saved_unets("adm")  # ADM-style: eps + learned variance (6 channels)
  unet = load_unet(convert_diffusers_unet(src, tmp_path / "converted"))
  schedule = diffusion.make_schedule("cosine", 1000)
  steps = 10

  def eps_fn(z, t):  # (B, N, H, W, C) video -> the U-Net's eps channels per frame
    b, n = z.shape[:2]
    out = unet(z.reshape(b * n, *z.shape[2:]), jnp.repeat(t, n))
    return out[..., :3].reshape(z.shape)

  got = jax.jit(
    lambda kb, kr: samplers.ddim_sample(
      eps_fn,
      schedule,
      SHAPE,
      kb,
      kr,
      lam=0.0,
      num_steps=steps,
      eta=0.0,
      clip_x0=True,
      noise_mode="standard",
    )
  )(*KEYS)

  sched = diffusers.DDIMScheduler(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    clip_sample=True,
    set_alpha_to_one=True,
    steps_offset=0,
    timestep_spacing="leading",
  )
  sched.set_timesteps(steps)
  z_t = np.asarray(draw_noise("standard", *KEYS, SHAPE, 0.0))  # our z_T, as images
  z = torch.from_numpy(z_t.reshape(-1, 16, 16, 3).transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    for t in sched.timesteps.tolist():
      eps = model(z, torch.full((z.shape[0],), t)).sample[:, :3]
      z = sched.step(eps, t, z, eta=0.0, use_clipped_model_output=True).prev_sample
  want = z.numpy().transpose(0, 2, 3, 1).reshape(SHAPE)

  assert np.abs(want).max() > 0.1  # a real image, not a collapsed one
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4 * max(1.0, np.abs(want).max()))
