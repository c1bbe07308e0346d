"""The config is videofusion_jax/configs/vdm.py (shipped in the package); this file
keeps `--config=configs/vdm.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.vdm import *  # noqa: F401,F403
