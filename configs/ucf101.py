"""The config is videofusion_jax/configs/ucf101.py (shipped in the package); this file
keeps `--config=configs/ucf101.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.ucf101 import *  # noqa: F401,F403
