"""The config is videofusion_jax/configs/folder.py (shipped in the package); this file
keeps `--config=configs/folder.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.folder import *  # noqa: F401,F403
