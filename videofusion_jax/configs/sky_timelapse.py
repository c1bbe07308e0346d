"""Sky Time-lapse, 16 frames of 128x128, the paper's Table 8 models.

python -m videofusion_jax.train --config=configs/sky_timelapse.py --workdir=runs/sky
python -m videofusion_jax.train --config=configs/sky_timelapse.py:path=/data/sky_train ...
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments(
  "configs/sky_timelapse.py", main="path", keys=dict(path="data/sky_timelapse/sky_train")
)


def get_config(arg: str = "", **defaults: str):
  path = ARGS.parse(arg, **defaults)["path"]
  c = base.get_config()
  c.data.source = "folder"
  c.data.path = path  # sky_train/<video>/<clip>/*.jpg (frame folders)
  c.data.random_start = True
  c.data.download = (
    "Get the Sky Time-lapse set (Xiong et al., CVPR 2018; linked from "
    "https://github.com/weixiong-ur/mdgan) and extract it so that "
    "data/sky_timelapse/sky_train/<video>/<clip>/ holds .jpg frames."
  )
  return c
