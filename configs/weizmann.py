"""The config is videofusion_jax/configs/weizmann.py (shipped in the package); this file
keeps `--config=configs/weizmann.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.weizmann import *  # noqa: F401,F403
