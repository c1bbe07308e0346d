"""TaiChi-HD, 16 frames of 128x128, the paper's Table 8 models.

python -m videofusion_jax.train --config=configs/taichi.py --workdir=runs/taichi
python -m videofusion_jax.train --config=configs/taichi.py:path=/data/taichi/train ...
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments("configs/taichi.py", main="path", keys=dict(path="data/taichi/train"))


def get_config(arg: str = "", **defaults: str):
  path = ARGS.parse(arg, **defaults)["path"]
  c = base.get_config()
  c.data.source = "folder"
  c.data.path = path  # taichi/train/<id>.mp4 or taichi/train/<id>/*.png
  c.data.random_start = True
  c.data.frame_stride = 4  # TaiChi moves slowly at its frame rate
  c.data.download = (
    "Build TaiChi-HD with the scripts of https://github.com/AliaksandrSiarohin/"
    "first-order-model (taichi-loading) and put the train clips in data/taichi/train/ "
    "as .mp4 files or folders of .png frames."
  )
  return c
