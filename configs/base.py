"""The config is videofusion_jax/configs/base.py (shipped in the package); this file
keeps `--config=configs/base.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.base import *  # noqa: F401,F403
