"""Train on any local folder of videos (sub-folder names become class labels).

  python -m videofusion_jax.train --config=configs/folder.py:path=/videos --workdir=runs/f
  python -m videofusion_jax.train --config=configs/folder.py:path=/videos,setting=gpu ...

Keys: `path` (a bare `folder.py:/videos` still means `path=/videos`) and `setting`,
configs/demo.py's (cpu, gpu or tiny). Model sizes are demo.py's, so it runs on a CPU;
override `--config.model...` or start from another config for real runs.

Clips are `data.num_frames` consecutive frames (`data.frame_stride` apart). For folders
mixing frame rates, `--config.data.fps=8` picks frames by timestamp instead, so every
clip lasts num_frames / 8 seconds (files shorter than that are skipped by name).
"""

from videofusion_jax.configs import demo
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments(
  "configs/folder.py", main="path", keys=dict(path="", setting=demo.ARGS.keys["setting"])
)


def get_config(arg: str = "", **defaults: str):
  a = ARGS.parse(arg, **defaults)
  c = demo.get_config(setting=a["setting"])
  c.data.source = "folder"
  c.data.path = a["path"]
  c.data.random_start = True
  return c
