"""The class-conditioned demo's SR stage: demo_sr.py (16x16 -> 32x32) conditioned on the
colour class as configs/demo_class.py is, trained with condition dropout, so the cascade
guides it (sample.guidance_scale, or --superres_guidance_scale).

  python -m videofusion_jax.train --config=configs/demo_class.py --workdir=runs/demo_class
  python -m videofusion_jax.train --config=configs/demo_class_sr.py --workdir=runs/demo_class_sr
  python -m videofusion_jax.sample --config=configs/demo_class.py --workdir=runs/demo_class \\
      --superres_workdir=runs/demo_class_sr --class_id=2   # SR video k: base video k's class
"""

from configs import demo_class, demo_sr


def get_config():
  c = demo_sr.get_config()
  c.data.synthetic_labels = "colour"  # the class is the shapes' colour
  c.cond = demo_class.get_config().cond  # the base model's condition, the same classes
  c.train.cond_drop_prob = 0.1        # clips trained unconditionally: guidance's null
  c.sample.guidance_scale = 3.0       # the SR stage's own guidance scale in the cascade
  return c
