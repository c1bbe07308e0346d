"""The config is videofusion_jax/configs/webvid_prior.py (shipped in the package); this file
keeps `--config=configs/webvid_prior.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.webvid_prior import *  # noqa: F401,F403
