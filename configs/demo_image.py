"""The config is videofusion_jax/configs/demo_image.py (shipped in the package); this file
keeps `--config=configs/demo_image.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.demo_image import *  # noqa: F401,F403
