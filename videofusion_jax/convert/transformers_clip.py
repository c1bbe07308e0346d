"""transformers CLIP state dicts -> parameters of our NNX CLIP towers (`models/clip.py`).

Our modules carry transformers' names, so the table is the U-Net converter's
`LAYER_PARAMS` (Linear/Conv/LayerNorm/Embed: torch name and transform per parameter)
plus one row for the bare `class_embedding` parameter, applied to every layer found by
walking the abstract NNX tower. A full `CLIPModel` checkpoint holds both towers under
`text_model.` / `vision_model.` plus `text_projection` / `visual_projection` (the keys of
the `*WithProjection` classes too), so one mapping serves all three layouts.
`position_ids` buffers (older checkpoints) and the contrastive `logit_scale` are ignored;
any other unused key, a missing key or a shape mismatch fails naming the keys.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from absl import logging
from flax import nnx

from videofusion_jax.convert.clip_checkpoint import TOKENIZER_FILES, save_clip
from videofusion_jax.convert.diffusers_unet import (
  LAYER_PARAMS,
  Entry,
  apply_param_table,
  param_table,
)
from videofusion_jax.convert.weights import find_weights_file, read_model_config, read_weights
from videofusion_jax.models.clip import (
  CLIPConfig,
  CLIPTextModelWithProjection,
  CLIPVisionEmbeddings,
  CLIPVisionModelWithProjection,
  clip_config_from_transformers,
)

# NNX module type -> {our parameter: (torch parameter, transform)}; first match wins.
CLIP_LAYER_PARAMS: dict[type, dict[str, tuple[str, str]]] = {
  CLIPVisionEmbeddings: {"class_embedding": ("class_embedding", "copy")},
  **LAYER_PARAMS,
}
# Torch keys that carry no parameter of the encoders.
IGNORED_KEYS = (r".*\.position_ids", r"logit_scale")
WEIGHT_STEMS = ("model", "pytorch_model")


def clip_param_table(module: nnx.Module) -> list[Entry]:
  """One `Entry` per parameter of a CLIP tower (abstract or concrete), in state order."""
  return param_table(
    module, CLIP_LAYER_PARAMS, lambda path: ".".join(map(str, path)), "CLIP_LAYER_PARAMS"
  )


def abstract_towers(config: CLIPConfig) -> dict[str, nnx.Module]:
  """ "text"/"vision" -> our tower with shapes only, for the towers the config has."""
  towers = {}
  if config.text is not None:
    towers["text"] = nnx.eval_shape(
      lambda: CLIPTextModelWithProjection(config.text, rngs=nnx.Rngs(0))
    )
  if config.vision is not None:
    towers["vision"] = nnx.eval_shape(
      lambda: CLIPVisionModelWithProjection(config.vision, rngs=nnx.Rngs(0))
    )
  return towers


def convert_clip_state_dict(
  state_dict: Mapping[str, np.ndarray], config: CLIPConfig, *, allow_unused: Iterable[str] = ()
) -> dict[str, dict]:
  """A transformers CLIP state dict -> {"text": params, "vision": params} (pure dicts).

  Only the towers of `config` are read; keys of a tower the config lacks count as unused.
  """
  entries = [
    dataclasses.replace(e, path=(name,) + e.path)  # {"text": ..., "vision": ...}
    for name, tower in abstract_towers(config).items()
    for e in clip_param_table(tower)
  ]
  return apply_param_table(
    state_dict,
    entries,
    allow_unused=tuple(IGNORED_KEYS) + tuple(allow_unused),
    what="the CLIP config",
  )


def find_clip_weights(src: Path) -> Path:
  errors = []
  for stem in WEIGHT_STEMS:
    try:
      return find_weights_file(src, stem=stem)
    except FileNotFoundError as e:
      errors.append(str(e))
  raise FileNotFoundError(f"no CLIP weights in {src}: " + "; ".join(errors))


def read_transformers_clip(
  src: str | Path, *, allow_unused: Iterable[str] = ()
) -> tuple[CLIPConfig, dict, dict]:
  """A transformers CLIP folder -> (CLIPConfig, {"text"/"vision": params}, config.json)."""
  hf_config = read_model_config(
    src,
    expected="a transformers CLIP folder with config.json and model.safetensors/pytorch_model.bin",
    instead="for a diffusers pipeline, pass its text_encoder/ or image_encoder/ subfolder",
  )
  config = clip_config_from_transformers(hf_config)
  params = convert_clip_state_dict(
    read_weights(find_clip_weights(src)), config, allow_unused=allow_unused
  )
  return config, params, hf_config


def find_tokenizer_dir(src: Path, tokenizer: str | Path | None) -> Path | None:
  """`tokenizer`, else SRC, else a diffusers pipeline's sibling `tokenizer/` folder."""
  candidates = [Path(tokenizer)] if tokenizer else [src, src.parent / "tokenizer"]
  for c in candidates:
    if all((c / f).is_file() for f in TOKENIZER_FILES[:2]):
      return c
  if tokenizer:
    raise FileNotFoundError(f"--tokenizer={tokenizer} holds no {TOKENIZER_FILES[:2]}")
  return None


def convert_transformers_clip(
  src: str | Path,
  out: str | Path,
  *,
  tokenizer: str | Path | None = None,
  allow_unused: Iterable[str] = (),
  overwrite: bool = False,
) -> Path:
  """`python -m videofusion_jax.convert clip`: read SRC, write OUT (see clip_checkpoint)."""
  src = Path(src)
  config, params, hf_config = read_transformers_clip(src, allow_unused=allow_unused)
  tok_dir = find_tokenizer_dir(src, tokenizer)
  if config.text is not None and tok_dir is None:
    logging.warning(
      "No vocab.json/merges.txt in %s or %s: the text tower is converted, but "
      "prompts cannot be tokenised until they are copied into %s",
      src,
      src.parent / "tokenizer",
      out,
    )
  source = {
    "path": str(src.absolute()),
    "architectures": hf_config.get("architectures"),
    "model_type": hf_config.get("model_type"),
    "transformers_version": hf_config.get("transformers_version"),
    "tokenizer": str(tok_dir.absolute()) if tok_dir else None,
  }
  return save_clip(out, params, config, source=source, tokenizer_dir=tok_dir, overwrite=overwrite)
