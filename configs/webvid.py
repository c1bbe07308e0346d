"""The config is videofusion_jax/configs/webvid.py (shipped in the package); this file
keeps `--config=configs/webvid.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.webvid import *  # noqa: F401,F403
