"""VDM* (the paper's Table 4 baseline): the base generator's U-Net with temporal
attention, denoising all 16 frames under independent noise. UCF101 sizes (Table 8
widths), or the demo's tiny sizes on the synthetic shapes with `:demo`.

  python -m videofusion_jax.train --config=configs/vdm.py --workdir=runs/vdm_ucf101
  python -m videofusion_jax.train --config=configs/vdm.py:/data/UCF-101 --workdir=...
  python -m videofusion_jax.train --config=configs/vdm.py:demo --workdir=runs/vdm_demo
  python -m videofusion_jax.sample --config=configs/vdm.py:demo --workdir=runs/vdm_demo
"""

from configs import demo, ucf101


def get_config(arg: str = ""):
  c = demo.get_config() if arg == "demo" else ucf101.get_config(arg or "data/UCF-101")
  c.model.kind = "vdm"                # models/vdm.py; its U-Net is model.base
  c.model.base.temporal = "attention"  # temporal attention with relative position bias
  c.model.temporal_placement = "attention"  # after each spatial attention (Ho et al.);
                                      # "all": after every ResNet layer
  c.diffusion.noise_mode = "standard"  # independent noise per frame (no base noise)
  return c
