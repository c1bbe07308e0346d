"""Start training from converted image U-Nets: `train.init_base_from` / `init_residual_from`.

The paper starts the base generator from a pretrained image diffusion model. A folder
written by `python -m videofusion_jax.convert diffusers-unet` holds such a U-Net.

Base generator: the converted U-Net must equal `model.base` field by field (its
in/out channels are set by `data.channels` and `model.learned_variance`; `dropout` may
differ, it holds no weights); its parameters replace the fresh ones.

Residual generator (optional; random otherwise), the rule: `model.residual` must equal
the converted U-Net except for the video parts (`in_channels`, `frame_conditioned`,
`temporal`, and `dropout`). Then
- every parameter with the same path and shape in the image U-Net is copied;
- `conv_in.kernel`: the image kernel fills the noisy frame's input channels and the extra
  context channels (`residual_context="centre_estimate"`) start at zero;
- `frame_embedding`: `linear_1` keeps its random init and `linear_2` starts at zero, so
  the frame index adds nothing at first but still gets gradients;
- temporal layers keep their init, which is already the identity (zero output layers).
So at step 0 the residual generator is the image model applied to each frame alone.

Condition module: a folder written by `convert unclip` holds the decoder's `text_proj`
as `condition/` (cond.kind="unclip"); `init_base_from` loads it into the model's
`condition` too, after checking that `cond` equals the converted one field by field.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from videofusion_jax import storage
from videofusion_jax.convert import diffusers_unclip
from videofusion_jax.convert.converted import load_converted
from videofusion_jax.models.unet import UNetConfig
from videofusion_jax.models.videofusion import VideoFusionConfig

_HINTS = {
  "in_channels": "set by data.channels (and model.residual_context)",
  "out_channels": "set by data.channels and model.learned_variance",
}
RESIDUAL_VIDEO_FIELDS = ("in_channels", "frame_conditioned", "temporal", "dropout")


def config_differences(
  converted: UNetConfig, wanted: UNetConfig, ignore: Iterable[str] = ("dropout",)
) -> list[str]:
  """'field: converted X, config Y' for each differing field not in `ignore`."""
  diffs = []
  for f in dataclasses.fields(UNetConfig):
    a, b = getattr(converted, f.name), getattr(wanted, f.name)
    a, b = (tuple(v) if isinstance(v, list) else v for v in (a, b))
    if f.name not in ignore and a != b:
      hint = f" ({_HINTS[f.name]})" if f.name in _HINTS else ""
      diffs.append(f"{f.name}: converted {a!r}, config {b!r}{hint}")
  return diffs


def _check(
  converted: UNetConfig, wanted: UNetConfig, flag: str, path, part: str, ignore: Iterable[str]
) -> None:
  diffs = config_differences(converted, wanted, ignore)
  if diffs:
    raise ValueError(
      f"{flag}={path}: the converted U-Net does not match model.{part}; "
      f"differing fields: {'; '.join(diffs)}. Paste {path}/config_snippet.py "
      "into the config."
    )


def _flat(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def residual_params(
  converted: dict[tuple, np.ndarray], fresh: dict[tuple, np.ndarray]
) -> tuple[dict, dict[str, int]]:
  """The module docstring's rule: residual parameters from image ones -> (params, counts)."""
  out, counts = {}, {"copied": 0, "conv_in": 0, "zeroed": 0, "kept": 0}
  wrong = []  # every mismatch, so one run shows them all
  for path, value in fresh.items():
    src = converted.get(path)
    if src is not None and src.shape == value.shape:
      out[path], counts["copied"] = src, counts["copied"] + 1
    elif path == ("conv_in", "kernel") and src is not None:
      kernel = np.zeros(value.shape, np.float32)  # (3, 3, C_in, C_out): image channels first
      kernel[:, :, : src.shape[2], :] = src
      out[path], counts["conv_in"] = kernel, 1
    elif path[:2] == ("frame_embedding", "linear_2"):
      out[path], counts["zeroed"] = np.zeros(value.shape, np.float32), counts["zeroed"] + 1
    else:
      if src is not None:
        wrong.append(
          f"{'.'.join(map(str, path))}: converted {src.shape}, residual generator {value.shape}"
        )
      counts["kept"] += 1
  if wrong:
    raise ValueError(
      f"{len(wrong)} converted parameter(s) have another shape than the "
      f"residual generator's: {'; '.join(wrong)}"
    )
  return out, counts


def _key(entry):
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return getattr(entry, attr)
  raise TypeError(f"unexpected tree path entry {entry!r}")


def _replace(tree, updates: dict[tuple, np.ndarray], prefix: tuple = ()):
  """`tree` with the leaves at `prefix + path` replaced, keeping dtype and sharding."""

  def put(path, leaf):
    keys = tuple(_key(p) for p in path)
    keys = keys[:-1] if keys and keys[-1] == "value" else keys  # nnx.Variable's leaf
    if keys[: len(prefix)] != prefix or keys[len(prefix) :] not in updates:
      return leaf
    return jax.device_put(jnp.asarray(updates[keys[len(prefix) :]], leaf.dtype), leaf.sharding)

  return jax.tree_util.tree_map_with_path(put, tree)


def _shapes(tree, prefix: tuple) -> dict[tuple, tuple]:
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = tuple(_key(p) for p in path)
    keys = keys[:-1] if keys and keys[-1] == "value" else keys
    if keys[: len(prefix)] == prefix:
      out[keys[len(prefix) :]] = leaf
  return out


def initial_params(vf: VideoFusionConfig, train_config, ema) -> dict[tuple, np.ndarray]:
  """Flat `("base"|"residual", ...) -> array` updates that `train.init_*_from` ask for.

  `ema` is the fresh parameter state (for the residual's shapes).
  """
  updates = {}
  base_path = train_config.init_base_from
  residual_path = train_config.init_residual_from
  if (base_path or residual_path) and not isinstance(vf, VideoFusionConfig):
    raise ValueError(
      "train.init_base_from / train.init_residual_from initialise "
      f"VideoFusion's two generators; model.kind builds {type(vf).__name__}"
    )
  if base_path:
    converted, params = load_converted(base_path)
    _check(converted, vf.base_unet(), "train.init_base_from", base_path, "base", ("dropout",))
    updates.update({("base",) + k: v for k, v in _flat(params).items()})
    logging.info("Base generator initialised from %s.", base_path)
    updates.update(_condition_params(vf, base_path))
  if residual_path:
    converted, params = load_converted(residual_path)
    _check(
      converted,
      vf.residual_unet(),
      "train.init_residual_from",
      residual_path,
      "residual",
      RESIDUAL_VIDEO_FIELDS,
    )
    fresh = _shapes(ema, ("residual",))
    new, counts = residual_params(_flat(params), fresh)
    updates.update({("residual",) + k: v for k, v in new.items()})
    logging.info("Residual generator initialised from %s: %s.", residual_path, counts)
  return updates


def _condition_params(vf: VideoFusionConfig, base_path) -> dict[tuple, np.ndarray]:
  """("condition", ...) updates from `base_path`/condition/ (a converted unCLIP text_proj)."""
  folder = storage.path(base_path) / diffusers_unclip.CONDITION_DIR
  if not folder.is_dir():
    if vf.cond.kind == "unclip":
      logging.warning(
        "train.init_base_from=%s has no condition/ folder: the unclip "
        "condition module starts random",
        base_path,
      )
    return {}
  converted, params = diffusers_unclip.load_condition(folder)
  if converted != vf.cond:
    diffs = [
      f"{f.name}: converted {getattr(converted, f.name)!r}, config {getattr(vf.cond, f.name)!r}"
      for f in dataclasses.fields(converted)
      if getattr(converted, f.name) != getattr(vf.cond, f.name)
    ]
    raise ValueError(
      f"train.init_base_from={base_path}: its condition/ does not match cond;"
      f" differing fields: {'; '.join(diffs)}. Paste {base_path}/"
      "config_snippet.py into the config."
    )
  logging.info("Condition module initialised from %s.", folder)
  return {("condition",) + k: v for k, v in _flat(params).items()}


def apply(state, ema, vf: VideoFusionConfig, train_config):
  """(state of (model, optimizer), EMA) with the converted parameters placed in both."""
  updates = initial_params(vf, train_config, ema)
  if not updates:
    return state, ema
  return _replace(state, updates, prefix=(0,)), _replace(ema, updates)
