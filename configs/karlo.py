"""The config is videofusion_jax/configs/karlo.py (shipped in the package); this file
keeps `--config=configs/karlo.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.karlo import *  # noqa: F401,F403
