"""UCF101 class-conditioned: the 101 action classes (the sub-folder names) condition both
generators; classifier-free guidance at sampling.

  python -m videofusion_jax.train --config=configs/ucf101_class.py --workdir=runs/ucf101_class
  python -m videofusion_jax.sample --config=configs/ucf101_class.py --workdir=runs/ucf101_class \\
      --class_id=0
  python -m videofusion_jax.train --config=configs/ucf101_class.py:tfds --workdir=...

The argument is as configs/ucf101.py's: the extracted folder, or `tfds[:DATA_DIR]` for
TFDS's ucf101 (its labels, in the folder layout's class order).
"""

from configs import ucf101


def get_config(path: str = "data/UCF-101"):
  c = ucf101.get_config(path)
  c.cond.kind = "class"
  c.cond.num_classes = 101            # ApplyEyeMakeup ... YoYo, sorted class names
  c.cond.embed_dim = 512
  c.cond.extra_tokens = 4             # the class vector also as 4 attention tokens
  c.train.cond_drop_prob = 0.1
  c.sample.guidance_scale = 3.0
  return c
