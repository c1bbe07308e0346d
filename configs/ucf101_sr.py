"""Kept for older commands: configs/ucf101_sr.py[:ARG] is
configs/ucf101.py:stage=sr (ARG: ucf101.py's keys; docs/configs.md)."""

from videofusion_jax.configs import ucf101


def get_config(arg: str = ""):
  return ucf101.get_config(arg, stage="sr")
