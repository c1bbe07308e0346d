"""UCF101 super-resolution stage of the cascade: 16 frames of 64x64 -> 128x128.

  python -m videofusion_jax.train --config=configs/ucf101_sr.py:/data/UCF-101 --workdir=runs/sr
  python -m videofusion_jax.sample --config=configs/ucf101.py:/data/UCF-101 \
      --workdir=runs/base --superres_workdir=runs/sr

(runs/base trained with `--config.data.image_size=64`; sampling reads the 64 from its
checkpoint.)

The clips are read at 128x128 (`configs/ucf101.py`'s folder source) and each is paired
with itself downsampled to `data.low_res_size` (data/superres_pairs.py). The model is
one 2D U-Net per frame (models/superres.py) trained with the decomposed noise of
`diffusion.lam`; the low-res frames get Imagen's noise-conditioning augmentation.
"""

import ml_collections

from configs import ucf101
from videofusion_jax.models.superres import SuperResConfig, unet_fields
from videofusion_jax.models.unet import UNetConfig


def sr_model(unet: UNetConfig) -> ml_collections.ConfigDict:
  """The `model` section of a super-resolution experiment around `unet`."""
  d = SuperResConfig()
  m = ml_collections.ConfigDict()
  m.kind = "superres"                 # models/superres.py (models/from_config.MODEL_KINDS)
  m.unet = unet_fields(unet)          # per-frame U-Net; its in/out channels and the
                                      # augmentation-level embedding are derived
  m.upsample = d.upsample             # "bilinear" or "bicubic" resize of the low-res frames
  m.residual_input = d.residual_input  # the U-Net denoises x - up(low): same noise, a
                                      # target that is small away from edges
  m.aug_max_level = d.aug_max_level   # training: augmentation level ~ U(0, this) per clip
  m.learned_variance = False
  m.dtype = "float32"                 # execution knobs, as in configs/base.py
  m.param_dtype = "float32"
  m.remat = False
  m.remat_policy = "nothing_saveable"
  return m


def get_config(path: str = "data/UCF-101"):
  c = ucf101.get_config(path)
  c.data.image_size = 128             # the high-resolution target
  c.data.low_res_size = 64            # the condition: the base model's frame size
  c.model = sr_model(UNetConfig(block_out_channels=(128, 256, 384, 512), layers_per_block=2,
                                attention_levels=(3,)))
  c.train.batch_size = 32
  c.train.num_steps = 100_000
  c.train.sample_every = 0            # SR samples need low-res inputs: use the cascade
  c.sample.aug_level = 0.1            # the fixed augmentation level when sampling
  c.sample.num_steps = 50             # the SR stage's own DDIM steps
  return c
