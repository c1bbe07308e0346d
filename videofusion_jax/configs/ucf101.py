"""UCF101, 16 frames of 128x128, the paper's Table 8 models; class-conditioned and
super-resolution variants by key.

  python -m videofusion_jax.train --config=configs/ucf101.py --workdir=runs/ucf101
  python -m videofusion_jax.train --config=configs/ucf101.py:path=/data/UCF-101 --workdir=...
  python -m videofusion_jax.train --config=configs/ucf101.py:path=tfds --workdir=...
  python -m videofusion_jax.train --config=configs/ucf101.py:path=tfds:/data/tensorflow_datasets ...
  python -m videofusion_jax.train --config=configs/ucf101.py:path=/data/UCF-101,cond=class \\
      --workdir=runs/ucf101_class
  python -m videofusion_jax.sample --config=configs/ucf101.py:cond=class \\
      --workdir=runs/ucf101_class --class_id=0
  python -m videofusion_jax.train --config=configs/ucf101.py:path=/data/UCF-101,stage=sr \\
      --workdir=runs/sr
  python -m videofusion_jax.sample --config=configs/ucf101.py:path=/data/UCF-101 \\
      --workdir=runs/base --superres_workdir=runs/sr

Keys (docs/configs.md; a bare `ucf101.py:/data/UCF-101` still means `path=...`):
  path   the extracted UCF-101 folder (default data/UCF-101), or `tfds` (optionally
         `tfds:DATA_DIR`) for TFDS's `ucf101/ucf101_1` (split 1, frames at their 320x240
         size, so both layouts are framed alike) read from a TFDS data_dir ("" =
         $TFDS_DATA_DIR or ~/tensorflow_datasets). TFDS decodes UCF101's Video feature
         with TensorFlow: install the `[tfds]` extra, and prepare the set once with
         `tfds build ucf101/ucf101_1 --data_dir=DIR --file_format=array_record`, then
         copy DIR/ucf101 there. Class ids are the sorted class names' positions in both
         layouts.
  cond   none (default); class: the 101 action classes (the sub-folder names) condition
         both generators, with classifier-free guidance at sampling
  stage  base (default); sr: the cascade's super-resolution stage, 16 frames of 64x64
         -> 128x128. The clips are read at 128x128 and each is paired with itself
         downsampled to `data.low_res_size` (data/superres_pairs.py); the model is one
         2D U-Net per frame (models/superres.py) trained with the decomposed noise of
         `diffusion.lam`, the low-res frames get Imagen's noise-conditioning
         augmentation. With cond=class the SR U-Net also takes the action class (its
         vector next to the augmentation-level embedding, its 4 tokens as attention
         context), as Imagen's SR stages take the text, and is guided in the cascade.
         The base run it pairs with trains at 64x64 (`--config.data.image_size=64`);
         sampling reads the 64 from its checkpoint.
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments
from videofusion_jax.models.unet import UNetConfig

TFDS_NAME = "ucf101/ucf101_1"
ARGS = Arguments(
  "configs/ucf101.py",
  main="path",
  keys=dict(path="data/UCF-101", cond=("none", "class"), stage=("base", "sr")),
)


def get_config(arg: str = "", **defaults: str):
  """`arg`: e.g. "path=/data/UCF-101,cond=class" (ARGS); `defaults` replace the keys'
  defaults (the alias files: configs/ucf101_class.py passes cond="class")."""
  a = ARGS.parse(arg, **defaults)
  c = _ucf101(a["path"])
  if a["stage"] == "sr":
    _superres(c)
  if a["cond"] == "class":
    _class_conditioned(c)
  return c


def _ucf101(path: str):
  c = base.get_config()
  c.data.random_start = True
  if path == "tfds" or path.startswith("tfds:"):
    c.data.source = "tfds"
    c.data.tfds_name = TFDS_NAME
    c.data.split = "train"  # split 1's 9,537 videos ("train+test": all 13,320)
    c.data.data_dir = path.partition(":")[2]
    return c
  c.data.source = "folder"
  c.data.path = path  # UCF-101/<Class>/v_<Class>_gXX_cXX.avi
  c.data.download = (
    "Download UCF101.rar from https://www.crcv.ucf.edu/data/UCF101.php, extract it so "
    "that data/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi exists (or pass the "
    "folder as configs/ucf101.py:path=/path/to/UCF-101). For a split, also extract "
    "UCF101TrainTestSplits-RecognitionTask.zip and set --config.data.split_file="
    "data/ucfTrainTestlist/trainlist01.txt."
  )
  return c


def _superres(c):
  c.data.image_size = 128  # the high-resolution target
  c.data.low_res_size = 64  # the condition: the base model's frame size
  c.model = base.superres_model(
    UNetConfig(block_out_channels=(128, 256, 384, 512), layers_per_block=2, attention_levels=(3,))
  )
  c.train.batch_size = 32
  c.train.num_steps = 100_000
  c.train.sample_every = 0  # SR samples need low-res inputs: use the cascade
  c.sample.aug_level = 0.1  # the fixed augmentation level when sampling
  c.sample.num_steps = 50  # the SR stage's own DDIM steps


def _class_conditioned(c):
  c.cond.kind = "class"
  c.cond.num_classes = 101  # ApplyEyeMakeup ... YoYo, sorted class names
  c.cond.embed_dim = 512
  c.cond.extra_tokens = 4  # the class vector also as 4 attention tokens
  c.train.cond_drop_prob = 0.1  # clips trained unconditionally: guidance's null
  c.sample.guidance_scale = 3.0  # (in the cascade: --superres_guidance_scale)
