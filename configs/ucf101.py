"""UCF101, 16 frames of 128x128, the paper's Table 8 models.

  python -m videofusion_jax.train --config=configs/ucf101.py --workdir=runs/ucf101
  python -m videofusion_jax.train --config=configs/ucf101.py:/data/UCF-101 --workdir=...
  python -m videofusion_jax.train --config=configs/ucf101.py:tfds --workdir=...
  python -m videofusion_jax.train --config=configs/ucf101.py:tfds:/data/tensorflow_datasets ...

The argument is the extracted UCF-101 folder, or `tfds` (optionally `tfds:DATA_DIR`)
for TFDS's `ucf101/ucf101_1` (split 1, frames at their 320x240 size, so both layouts
are framed alike) read from a TFDS data_dir ("" = $TFDS_DATA_DIR or
~/tensorflow_datasets). TFDS decodes UCF101's Video feature with TensorFlow: install the
`[tfds]` extra, and prepare the set once with `tfds build ucf101/ucf101_1
--data_dir=DIR --file_format=array_record`, then copy DIR/ucf101 there. Class ids are
the sorted class names' positions in both layouts.
"""

from configs import base

TFDS_NAME = "ucf101/ucf101_1"


def get_config(path: str = "data/UCF-101"):
  c = base.get_config()
  c.data.random_start = True
  if path == "tfds" or path.startswith("tfds:"):
    c.data.source = "tfds"
    c.data.tfds_name = TFDS_NAME
    c.data.split = "train"            # split 1's 9,537 videos ("train+test": all 13,320)
    c.data.data_dir = path.partition(":")[2]
    return c
  c.data.source = "folder"
  c.data.path = path                  # UCF-101/<Class>/v_<Class>_gXX_cXX.avi
  c.data.download = (
      "Download UCF101.rar from https://www.crcv.ucf.edu/data/UCF101.php, extract it so "
      "that data/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi exists (or pass the "
      "folder as configs/ucf101.py:/path/to/UCF-101). For a split, also extract "
      "UCF101TrainTestSplits-RecognitionTask.zip and set --config.data.split_file="
      "data/ucfTrainTestlist/trainlist01.txt.")
  return c
