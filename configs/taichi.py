"""The config is videofusion_jax/configs/taichi.py (shipped in the package); this file
keeps `--config=configs/taichi.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.taichi import *  # noqa: F401,F403
