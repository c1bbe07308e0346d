"""A tiny super-resolution stage for configs/demo.py: 8 frames of 16x16 -> 32x32, on CPU.

  python -m videofusion_jax.train --config=configs/demo_sr.py --workdir=runs/demo_sr
  python -m videofusion_jax.sample --config=configs/demo.py --workdir=runs/demo \
      --superres_workdir=runs/demo_sr   # writes runs/demo/samples and samples_32
"""

from configs import demo, ucf101_sr
from videofusion_jax.models.unet import UNetConfig


def get_config():
  c = demo.get_config()               # synthetic shapes, demo training settings
  c.data.image_size = 32
  c.data.low_res_size = 16            # demo.py's frame size
  c.model = ucf101_sr.sr_model(UNetConfig(block_out_channels=(32, 64), layers_per_block=1,
                                          attention_levels=(), mid_block_attention=False,
                                          norm_num_groups=8))
  c.model.aug_max_level = 0.3
  c.train.sample_every = 0
  c.sample.aug_level = 0.05
  return c
