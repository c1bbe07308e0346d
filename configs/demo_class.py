"""The demo, class-conditioned: each synthetic clip's shapes share one of 6 colours, and
the colour is the class (data.synthetic_labels="colour"). Samples of a class should
take its colour; classifier-free guidance (sample.guidance_scale) sharpens that.

  python -m videofusion_jax.train --config=configs/demo_class.py --workdir=runs/demo_class
  python -m videofusion_jax.sample --config=configs/demo_class.py --workdir=runs/demo_class \\
      --class_id=2
"""

from configs import demo
from videofusion_jax.data.synthetic import NUM_COLOURS


def get_config():
  c = demo.get_config()
  c.data.synthetic_labels = "colour"
  c.cond.kind = "class"
  c.cond.num_classes = NUM_COLOURS
  c.cond.embed_dim = 64               # the tiny U-Nets' 32/64 channels: a small vector
  c.cond.extra_tokens = 0             # additive only: no cross-attention in the demo
  c.sample.num_videos = NUM_COLOURS   # one video per class (sample.class_id = -1)
  c.sample.batch_size = NUM_COLOURS
  return c
