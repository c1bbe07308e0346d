"""The config is videofusion_jax/configs/prior_synthetic.py (shipped in the package); this file
keeps `--config=configs/prior_synthetic.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.prior_synthetic import *  # noqa: F401,F403
