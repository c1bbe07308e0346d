"""Named model sizes: the paper's Tables 8 and 9, and tiny ones for tests and laptops."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from videofusion_jax.models.unet import UNetConfig
from videofusion_jax.models.videofusion import VideoFusionConfig


def table8() -> VideoFusionConfig:
  """UCF101 / Sky Time-lapse / TaiChi-HD (paper Table 8): base 192, residual 128."""
  return VideoFusionConfig(
    base=UNetConfig(block_out_channels=(192, 384, 576, 960), layers_per_block=2),
    residual=UNetConfig(
      block_out_channels=(128, 256, 384, 640), layers_per_block=2, temporal="attention"
    ),
  )


def table9() -> VideoFusionConfig:
  """WebVid-10M (paper Table 9): base 512, residual 192, mults 1,2,3,4, 3 layers."""
  return VideoFusionConfig(
    base=UNetConfig(block_out_channels=(512, 1024, 1536, 2048), layers_per_block=3),
    residual=UNetConfig(
      block_out_channels=(192, 384, 576, 768), layers_per_block=3, temporal="attention"
    ),
  )


def tiny() -> VideoFusionConfig:
  """Two 32/64-channel stages: compiles in seconds on a CPU (tests, the demo)."""
  small = UNetConfig(
    block_out_channels=(32, 64),
    layers_per_block=1,
    attention_levels=(1,),
    attention_head_dim=32,
    norm_num_groups=8,
  )
  return VideoFusionConfig(base=small, residual=dataclasses.replace(small, temporal="attention"))


PRESETS = {"table8": table8, "table9": table9, "tiny": tiny}


def get_preset(name: str) -> VideoFusionConfig:
  if name not in PRESETS:
    raise ValueError(f"model preset {name!r}; expected one of {sorted(PRESETS)}")
  return PRESETS[name]()


def unet_config_from_dict(fields: Mapping[str, Any], name: str) -> UNetConfig:
  """Build a `UNetConfig` from a config dict, failing on unknown fields by name."""
  known = {f.name for f in dataclasses.fields(UNetConfig)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"{name} has unknown field(s) {unknown}; known: {sorted(known)}")
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  return UNetConfig(**fields)
