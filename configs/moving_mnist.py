"""The config is videofusion_jax/configs/moving_mnist.py (shipped in the package); this file
keeps `--config=configs/moving_mnist.py` working from a clone's root (docs/configs.md)."""

from videofusion_jax.configs.moving_mnist import *  # noqa: F401,F403
