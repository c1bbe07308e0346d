"""The config is videofusion_jax/configs/demo.py (shipped in the package); this file
keeps `--config=configs/demo.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.demo import *  # noqa: F401,F403
