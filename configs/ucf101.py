"""UCF101, 16 frames of 128x128, the paper's Table 8 models.

  python -m videofusion_jax.train --config=configs/ucf101.py --workdir=runs/ucf101
  python -m videofusion_jax.train --config=configs/ucf101.py:/data/UCF-101 --workdir=...
"""

from configs import base


def get_config(path: str = "data/UCF-101"):
  c = base.get_config()
  c.data.source = "folder"
  c.data.path = path                  # UCF-101/<Class>/v_<Class>_gXX_cXX.avi
  c.data.random_start = True
  c.data.download = (
      "Download UCF101.rar from https://www.crcv.ucf.edu/data/UCF101.php, extract it so "
      "that data/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi exists (or pass the "
      "folder as configs/ucf101.py:/path/to/UCF-101). For a split, also extract "
      "UCF101TrainTestSplits-RecognitionTask.zip and set --config.data.split_file="
      "data/ucfTrainTestlist/trainlist01.txt.")
  return c
