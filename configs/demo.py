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
  c.train.num_steps = 2_000
  c.train.batch_size = 16
  c.train.ema_decay = 0.995
  c.train.log_every = 50
  c.train.checkpoint_every = 500
  c.train.sample_every = 0
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.base_lr_scale = 1.0         # trained from scratch: no pretrained base to protect
  c.sample.num_steps = 25
  c.sample.num_videos = 4
  c.sample.batch_size = 4
  return c
