"""VDM* (the paper's Table 4 baseline): the base generator's U-Net with temporal
attention, denoising all 16 frames under independent noise. UCF101 sizes (Table 8
widths), or the demo's tiny sizes on the synthetic shapes with `data=demo`.

  python -m videofusion_jax.train --config=configs/vdm.py --workdir=runs/vdm_ucf101
  python -m videofusion_jax.train --config=configs/vdm.py:path=/data/UCF-101 --workdir=...
  python -m videofusion_jax.train --config=configs/vdm.py:data=demo --workdir=runs/vdm_demo
  python -m videofusion_jax.sample --config=configs/vdm.py:data=demo --workdir=runs/vdm_demo

Keys (docs/configs.md; the old bare `vdm.py:demo` and `vdm.py:/data/UCF-101` still work):
  data  ucf101 (default): configs/ucf101.py's data and sizes; demo: configs/demo.py's
  path  ucf101's folder or `tfds[:DATA_DIR]`, as configs/ucf101.py's path
"""

from videofusion_jax.configs import demo, ucf101
from videofusion_jax.configs.arguments import Arguments

ARGS = Arguments(
  "configs/vdm.py", main="path", keys=dict(data=("ucf101", "demo"), path="data/UCF-101")
)


def get_config(arg: str = "", **defaults: str):
  a = ARGS.parse(arg, **defaults)
  c = demo.get_config() if a["data"] == "demo" else ucf101.get_config(path=a["path"])
  c.model.kind = "vdm"  # models/vdm.py; its U-Net is model.base
  c.model.base.temporal = "attention"  # temporal attention with relative position bias
  c.model.temporal_placement = "attention"  # after each spatial attention (Ho et al.);
  # "all": after every ResNet layer
  c.diffusion.noise_mode = "standard"  # independent noise per frame (no base noise)
  return c
