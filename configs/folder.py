"""Train on any local folder of videos (sub-folder names become class labels).

  python -m videofusion_jax.train --config=configs/folder.py:/path/to/videos --workdir=runs/f

Model sizes are demo.py's so it runs on a CPU; override `--config.model...` or start
from another config for real runs.

Clips are `data.num_frames` consecutive frames (`data.frame_stride` apart). For folders
mixing frame rates, `--config.data.fps=8` picks frames by timestamp instead, so every
clip lasts num_frames / 8 seconds (files shorter than that are skipped by name).
"""

from configs import demo


def get_config(path: str = ""):
  c = demo.get_config()
  c.data.source = "folder"
  c.data.path = path
  c.data.random_start = True
  return c
