"""A tiny VideoFusion that runs on a laptop CPU in minutes.

  make demo      # or: python -m videofusion_jax.sample --config=configs/demo.py --workdir=runs/demo
"""

from configs import base
from videofusion_jax.models import presets
from videofusion_jax.models.from_config import unet_fields


def get_config():
  c = base.get_config()
  c.data.num_frames = 8
  c.data.image_size = 16
  tiny = presets.tiny()
  c.model.base = unet_fields(tiny.base)
  c.model.residual = unet_fields(tiny.residual)
  c.diffusion.objective = "v"         # clean frames much sooner than eps (DESIGN.md)
  c.sample.num_steps = 25
  c.sample.num_videos = 4
  c.sample.batch_size = 4
  return c
