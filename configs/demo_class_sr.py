"""Kept for older commands: configs/demo_class_sr.py[:ARG] is
configs/demo.py:cond=class,stage=sr (ARG: demo.py's keys; docs/configs.md)."""

from videofusion_jax.configs import demo


def get_config(arg: str = ""):
  return demo.get_config(arg, cond="class", stage="sr")
