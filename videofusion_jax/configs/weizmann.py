"""Weizmann Action, lam = 0.9 as the paper's content/motion experiment (Sec 4.7).

  python -m videofusion_jax.train --config=configs/weizmann.py --workdir=runs/weizmann
  python -m videofusion_jax.train --config=configs/weizmann.py:path=/data/weizmann ...
  python -m videofusion_jax.sample --config=configs/weizmann.py --workdir=runs/weizmann \
      --vary=both --num_videos=4

Batches are blocks of `data.group_identities` people x `data.group_actions` actions;
the train step shares the base noise across clips of one person and the residual noise
across clips of one action, so the base noise learns content and the residual motion.
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments("configs/weizmann.py", main="path", keys=dict(path="data/weizmann"))


def get_config(arg: str = "", **defaults: str):
  path = ARGS.parse(arg, **defaults)["path"]
  c = base.get_config()
  c.data.source = "weizmann"  # <person>_<action>[N].avi: identity and action ids
  c.data.path = path
  c.data.image_size = 64
  c.data.random_start = True
  c.data.group_identities = 2  # a batch of 64 = 16 blocks of 2 people x 2 actions
  c.data.group_actions = 2
  c.diffusion.lam = 0.9
  c.data.download = (
    "Download the Weizmann Action videos (classification database) from "
    "https://www.wisdom.weizmann.ac.il/~vision/SpaceTimeActions.html and put the "
    "<person>_<action>.avi files in data/weizmann/."
  )
  return c
