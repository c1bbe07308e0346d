"""The config is videofusion_jax/configs/sky_timelapse.py (shipped in the package); this file
keeps `--config=configs/sky_timelapse.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.sky_timelapse import *  # noqa: F401,F403
