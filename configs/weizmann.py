"""Weizmann Action, lam = 0.9 as the paper's content/motion experiment (Sec 4.7).

  python -m videofusion_jax.train --config=configs/weizmann.py --workdir=runs/weizmann
"""

from configs import base


def get_config(path: str = "data/weizmann"):
  c = base.get_config()
  c.data.source = "folder"
  c.data.path = path                  # weizmann/<person>_<action>.avi
  c.data.image_size = 64
  c.data.random_start = True
  c.diffusion.lam = 0.9
  c.data.download = (
      "Download the Weizmann Action videos (classification database) from "
      "https://www.wisdom.weizmann.ac.il/~vision/SpaceTimeActions.html and put the "
      "<person>_<action>.avi files in data/weizmann/.")
  return c
