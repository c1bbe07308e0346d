"""Fixtures of the conversion tests: tiny diffusers U-Nets saved once per session."""

import pytest

from tests.convert.tiny_unets import build_torch_unet


@pytest.fixture(scope="session")
def saved_unets(tmp_path_factory):
  """name -> folder of `save_pretrained` (safetensors) for each tiny model, built once."""
  root = tmp_path_factory.mktemp("diffusers_unets")
  cache = {}

  def get(name):
    if name not in cache:
      model = build_torch_unet(name)
      model.save_pretrained(root / name)
      cache[name] = (root / name, model)
    return cache[name]

  return get
