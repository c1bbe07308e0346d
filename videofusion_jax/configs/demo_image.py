"""The demo's base generator pretrained as an image diffusion model (paper Table 6).

  python -m videofusion_jax.train --config=configs/demo_image.py --workdir=runs/demo_image
  python -m benchmarks.study_image_base --config=configs/demo_image.py \
      --workdir=runs/demo_image --out=runs/demo_image/base_unet
  python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo_pretrained \
      --config.train.init_base_from=runs/demo_image/base_unet

Keys: those of configs/demo.py (setting=cpu|gpu|tiny, ...), whose model, data and
objective this run shares. The paper starts VideoFusion's base generator from an image
diffusion model; here that model is trained on single frames of the demo's own data.

How: VideoFusion's base generator sees only the centre frame and learns only from it
(Eq. 14's stop gradient), so a VideoFusion trained on 2-frame clips trains the base
generator as an image diffusion model on one frame per clip (frame 0 of a synthetic clip
is a frame like any other: the shapes start anywhere). The one other frame goes to a
residual generator shrunk to a single 8-channel stage, which costs little and is thrown
away. The batch is 4x the video recipe's, in frames about half of a video step's U-Net
work (video: batch x num_frames frames through the two U-Nets), and the steps are the
video recipe's. `benchmarks/study_image_base.py` then writes the EMA base generator as a
converted U-Net folder, which `train.init_base_from` reads (its U-Net equals
configs/demo.py's `model.base` field by field).
"""

from videofusion_jax.configs import demo
from videofusion_jax.models.from_config import unet_fields
from videofusion_jax.models.unet import UNetConfig

IMAGE_BATCH_FACTOR = 4  # frames per step relative to the video recipe's clips

# The residual generator that the 2-frame clips need and nobody uses afterwards.
THROWAWAY_RESIDUAL = UNetConfig(
  block_out_channels=(8,),
  layers_per_block=1,
  attention_levels=(),
  mid_block_attention=False,
  norm_num_groups=8,
)


def get_config(arg: str = ""):
  """`arg`: configs/demo.py's keys (e.g. "setting=gpu"); the video recipe it pretrains for."""
  c = demo.get_config(arg)
  c.data.num_frames = 2  # centre frame 0: the base generator's image
  c.model.residual = unet_fields(THROWAWAY_RESIDUAL)
  c.train.batch_size = IMAGE_BATCH_FACTOR * c.train.batch_size
  c.sample.num_videos = c.sample.batch_size = max(c.sample.batch_size, 2)
  return c
