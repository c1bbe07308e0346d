"""Pick a batch's condition inputs out of what the data source yields.

Sources yield per-clip entries (`label`, `image_embed`, `text_hidden`, captions...);
the model reads `batch["cond"]` (models/conditioning.py). This is the one place that
maps one onto the other and checks them, before anything reaches a device.
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections
import numpy as np

from videofusion_jax.data.clip_cache_source import NULL_TEXT_ARRAYS, ClipCacheSource
from videofusion_jax.models.conditioning import ConditionConfig

# model condition input -> the source entry that holds it
SOURCE_ENTRIES = {
  "class_id": "label",
  "image_embed": "image_embed",
  "text_hidden": "text_hidden",
  "text_embeds": "text_embeds",
  **{k: k for k in ("text_mask",) + NULL_TEXT_ARRAYS},
}
# cond.kind "unclip" also reads the caption's mask and the empty prompt's encoding, the
# text input of clips dropped by train.cond_drop_prob (models/conditioning.py).
UNCLIP_EXTRA = ("text_mask",) + NULL_TEXT_ARRAYS
_CACHE = "data.clip_cache (python -m videofusion_jax.tools.clip_cache"
_HOW = {
  "label": "a labelled source (synthetic, weizmann, or a folder with a class list)",
  "image_embed": f"{_CACHE})",
  "text_hidden": f"{_CACHE} --text_hidden)",
  **{k: f"{_CACHE} --text_hidden)" for k in ("text_embeds",) + UNCLIP_EXTRA},
}


def condition_inputs(batch: Mapping[str, Any], cond: ConditionConfig) -> dict[str, Any]:
  """`batch` with `batch["cond"]` filled from its entries for `cond` (unchanged when
  the model is unconditioned). Entries already under `batch["cond"]` are kept."""
  if not cond.enabled:
    return dict(batch)
  out = dict(batch)
  inputs = dict(batch.get("cond", {}))
  extra = UNCLIP_EXTRA if cond.kind == "unclip" else ()
  for name in cond.input_names() + extra:
    entry = SOURCE_ENTRIES[name]
    if entry not in batch:
      raise ValueError(
        f"cond.kind={cond.kind!r} needs the data entry {entry!r} "
        f"({_HOW[entry]}); the batch has {sorted(batch)}"
      )
    inputs[name] = np.asarray(batch[entry])
  if cond.kind == "class":
    check_class_ids(inputs["class_id"], cond.num_classes, "data label")
  out["cond"] = inputs
  return out


def conditioned_source(source: Any, data: ml_collections.ConfigDict, cond: ConditionConfig) -> Any:
  """The training source with what the condition needs: class counts checked against a
  folder's class sub-folders; CLIP image embeddings joined from `data.clip_cache` (and,
  for kind "unclip", the captions' and the empty prompt's text encodings)."""
  classes = getattr(source, "classes", None)
  if cond.kind == "class" and classes and len(classes) != cond.num_classes:
    raise ValueError(
      f"cond.num_classes={cond.num_classes} but data.path has "
      f"{len(classes)} class folders ({', '.join(classes[:3])}, ...)"
    )
  if cond.kind not in ("image_embed", "unclip"):
    return source
  unclip = cond.kind == "unclip"
  if not data.clip_cache:
    raise ValueError(
      f"cond.kind={cond.kind!r} needs data.clip_cache, the CLIP embeddings "
      "of the clips' centre frames"
      + (" and captions" if unclip else "")
      + ": python -m videofusion_jax.tools.clip_cache --config=<this config> "
      "--clip=<converted CLIP> --out=<file.npz>" + (" --text_hidden" if unclip else "")
    )
  joined = ClipCacheSource(source, data.clip_cache, name=data.source, text_inputs=unclip)
  check_cache_widths(joined, cond)
  return joined


def check_cache_widths(joined: ClipCacheSource, cond: ConditionConfig) -> None:
  """The cache's embedding and text widths against cond (before anything compiles)."""
  widths = {"image_embeds": (joined.image_embeds.shape[-1], "embed_dim")}
  if cond.kind == "unclip":
    widths["text_embeds"] = (joined.text["text_embeds"].shape[-1], "embed_dim")
  if cond.text_dim and joined.text_hidden is not None:
    widths["text_hidden"] = (joined.text_hidden.shape[-1], "text_dim")
  for array, (width, field) in widths.items():
    if width != getattr(cond, field):
      raise ValueError(
        f"data.clip_cache={str(joined.path)!r}: {array} are {width}-d; "
        f"cond.{field}={getattr(cond, field)} (a cache made with another "
        "CLIP?)"
      )


def check_class_ids(ids, num_classes: int, what: str = "class id") -> np.ndarray:
  """Integer ids in [0, num_classes), or a ValueError naming the first bad one."""
  ids = np.asarray(ids)
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{what} values {ids[:4]}... are not integers")
  bad = ids[(ids < 0) | (ids >= num_classes)]
  if bad.size:
    raise ValueError(f"{what} {int(bad[0])} is outside [0, cond.num_classes={num_classes})")
  return ids.astype(np.int32)
