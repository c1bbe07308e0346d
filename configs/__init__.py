"""Thin files that keep `--config=configs/NAME.py` and `from configs import NAME` working
from a clone's root; the configs themselves live in videofusion_jax/configs/."""
