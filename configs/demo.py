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
  c.train.num_steps = 600             # about 7 minutes on 2 CPU cores (0.7 s/step)
  c.train.batch_size = 8
  c.train.ema_decay = 0.995
  c.train.log_every = 25
  c.train.checkpoint_every = 200
  c.train.sample_every = 0
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.base_lr_scale = 1.0         # trained from scratch: no pretrained base to protect
  c.sample.num_steps = 25
  c.sample.num_videos = 4
  c.sample.batch_size = 4
  return c
