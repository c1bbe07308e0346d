"""UCF101 class-conditioned super-resolution (64x64 -> 128x128), the second stage of
configs/ucf101_class.py: the SR U-Net also takes the action class (its vector next to
the augmentation-level embedding, its 4 tokens as attention context), as Imagen's SR
stages take the text, and is guided with classifier-free guidance in the cascade.

  python -m videofusion_jax.train --config=configs/ucf101_class_sr.py:/data/UCF-101 \\
      --workdir=runs/sr_class
  python -m videofusion_jax.sample --config=configs/ucf101_class.py:/data/UCF-101 \\
      --config.data.image_size=64 --workdir=runs/ucf101_class \\
      --superres_workdir=runs/sr_class --class_id=0
"""

from configs import ucf101_class, ucf101_sr


def get_config(path: str = "data/UCF-101"):
  c = ucf101_sr.get_config(path)
  c.cond = ucf101_class.get_config(path).cond  # 101 classes, the sub-folder names
  c.train.cond_drop_prob = 0.1
  c.sample.guidance_scale = 3.0       # the SR stage's guidance (--superres_guidance_scale)
  return c
