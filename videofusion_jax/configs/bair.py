"""BAIR robot pushing (TFDS `bair_robot_pushing_small`), 16 frames of 64x64,
unconditional, the paper's Table 8 models: base 192 / residual 128 channels, mults
1,2,3,5, 2 layers per scale (the configs/ucf101.py sizes, at 64x64). BAIR is the
benchmark on which VDM reported FVD.

  python -m videofusion_jax.train --config=configs/bair.py --workdir=runs/bair
  python -m videofusion_jax.train --config=configs/bair.py:data_dir=/data/tfds ...

The key `data_dir` (a bare `bair.py:DIR` still means `data_dir=DIR`) is the TFDS
data_dir holding the prepared dataset ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets).
Prepare it once where TensorFlow and the network are:
`pip install -e '.[tfds]'`, then `tfds build bair_robot_pushing_small
--data_dir=DIR --file_format=array_record`, and copy DIR/bair_robot_pushing_small
there. Reading it needs tensorflow-datasets but no TensorFlow.
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments("configs/bair.py", main="data_dir", keys=dict(data_dir=""))


def get_config(arg: str = "", **defaults: str):
  data_dir = ARGS.parse(arg, **defaults)["data_dir"]
  c = base.get_config()
  c.data.source = "tfds"
  c.data.tfds_name = "bair_robot_pushing_small"  # 43,264 train sequences of 30 frames
  c.data.split = "train"
  c.data.data_dir = data_dir
  c.data.num_frames = 16
  c.data.image_size = 64  # the stored size: no resize
  c.data.random_start = True  # a new 16-frame window of the 30 each epoch
  return c
