"""Moving MNIST (TFDS `moving_mnist`): two digits bouncing in 64x64 grey frames, 16 of
each 20-frame sequence, unconditional. A small real benchmark, with smaller models than
the paper's (our choice, not a paper setting): base 64 / residual 32 channels, mults
1,2,3,4, Table 8's 2 layers per scale.

  python -m videofusion_jax.train --config=configs/moving_mnist.py --workdir=runs/mmnist
  python -m videofusion_jax.train --config=configs/moving_mnist.py:data_dir=/data/tfds ...

The key `data_dir` (a bare `moving_mnist.py:DIR` still means `data_dir=DIR`) is the
TFDS data_dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets). TFDS stores its frames
as a Video feature, which TensorFlow decodes: install the `[tfds]` extra
(tensorflow-cpu) to train, and prepare the set once with `tfds build moving_mnist
--data_dir=DIR --file_format=array_record`, then copy DIR/moving_mnist there.
TFDS has only its 10,000-sequence "test" split.
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments("configs/moving_mnist.py", main="data_dir", keys=dict(data_dir=""))


def get_config(arg: str = "", **defaults: str):
  data_dir = ARGS.parse(arg, **defaults)["data_dir"]
  c = base.get_config()
  c.data.source = "tfds"
  c.data.tfds_name = "moving_mnist"
  c.data.split = "test"  # the only split TFDS makes
  c.data.data_dir = data_dir
  c.data.num_frames = 16
  c.data.image_size = 64
  c.data.channels = 1  # grey
  c.data.random_start = True  # a new 16-frame window of the 20 each epoch
  c.model.base.block_out_channels = (64, 128, 192, 256)
  c.model.residual.block_out_channels = (32, 64, 96, 128)
  c.train.num_steps = 100_000
  return c
