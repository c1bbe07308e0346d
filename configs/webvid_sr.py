"""The config is videofusion_jax/configs/webvid_sr.py (shipped in the package); this file
keeps `--config=configs/webvid_sr.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.webvid_sr import *  # noqa: F401,F403
