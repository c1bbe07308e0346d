"""Flax NNX networks: the U-Net, VideoFusion and named sizes."""

from videofusion_jax.models.presets import PRESETS, get_preset, table8, table9, tiny
from videofusion_jax.models.unet import UNet, UNetConfig
from videofusion_jax.models.videofusion import VideoFusion, VideoFusionConfig
