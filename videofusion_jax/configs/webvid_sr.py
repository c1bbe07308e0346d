"""WebVid text-to-video super-resolution (64x64 -> 128x128), the second stage of
configs/webvid.py: the SR U-Net takes the clip's CLIP image embedding as the base
generators do (the same data.clip_cache, one row per clip), is trained with condition
dropout and guided in the cascade. Sampling from a prompt, the prompt's image
embedding from the prior conditions both stages.

  python -m videofusion_jax.train --config=configs/webvid_sr.py --workdir=gs://BUCKET/runs/webvid_sr
  python -m videofusion_jax.sample --config=configs/webvid.py --workdir=gs://BUCKET/runs/webvid \\
      --superres_workdir=gs://BUCKET/runs/webvid_sr --prompt="a red panda eating bamboo"
"""

from videofusion_jax.configs import base, webvid
from videofusion_jax.configs.arguments import Arguments
from videofusion_jax.models.unet import UNetConfig

ARGS = Arguments("configs/webvid_sr.py", main="path", keys=dict(path="data/webvid/videos"))


def get_config(arg: str = "", **defaults: str):
  path = ARGS.parse(arg, **defaults)["path"]
  c = webvid.get_config(path=path)  # WebVid source, CLIP cache, image-embed condition
  c.data.image_size = 128  # the high-resolution target
  c.data.low_res_size = 64  # the base model's frames
  c.model = base.superres_model(
    UNetConfig(block_out_channels=(128, 256, 384, 512), layers_per_block=2, attention_levels=(3,))
  )
  c.model.dtype = "bfloat16"  # as the base stage: bf16 compute, fp32 parameters
  c.model.remat = True
  c.train.cond_drop_prob = 0.1
  c.train.sample_every = 0  # SR samples need low-res inputs: use the cascade
  c.sample.aug_level = 0.1
  c.sample.num_steps = 50
  c.sample.guidance_scale = 3.0
  return c
