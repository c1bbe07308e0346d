"""The config is videofusion_jax/configs/bair.py (shipped in the package); this file
keeps `--config=configs/bair.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.bair import *  # noqa: F401,F403
