"""Pick a batch's condition inputs out of what the data source yields.

Sources yield per-clip entries (`label`, `image_embed`, `text_hidden`, captions...);
the model reads `batch["cond"]` (models/conditioning.py). This is the one place that
maps one onto the other and checks them, before anything reaches a device.
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections
import numpy as np

from videofusion_jax.data.clip_cache_source import ClipCacheSource
from videofusion_jax.models.conditioning import ConditionConfig

# model condition input -> the source entry that holds it
SOURCE_ENTRIES = {"class_id": "label", "image_embed": "image_embed",
                  "text_hidden": "text_hidden"}
_HOW = {"label": "a labelled source (synthetic, weizmann, or a folder with a class list)",
        "image_embed": "data.clip_cache (python -m videofusion_jax.tools.clip_cache)",
        "text_hidden": "data.clip_cache with text hidden states"}


def condition_inputs(batch: Mapping[str, Any], cond: ConditionConfig) -> dict[str, Any]:
  """`batch` with `batch["cond"]` filled from its entries for `cond` (unchanged when
  the model is unconditioned). Entries already under `batch["cond"]` are kept."""
  if not cond.enabled:
    return dict(batch)
  out = dict(batch)
  inputs = dict(batch.get("cond", {}))
  for name in cond.input_names():
    entry = SOURCE_ENTRIES[name]
    if entry not in batch:
      raise ValueError(f"cond.kind={cond.kind!r} needs the data entry {entry!r} "
                       f"({_HOW[entry]}); the batch has {sorted(batch)}")
    inputs[name] = np.asarray(batch[entry])
  if cond.kind == "class":
    check_class_ids(inputs["class_id"], cond.num_classes, "data label")
  out["cond"] = inputs
  return out


def conditioned_source(source: Any, data: ml_collections.ConfigDict,
                       cond: ConditionConfig) -> Any:
  """The training source with what the condition needs: class counts checked against a
  folder's class sub-folders; CLIP image embeddings joined from `data.clip_cache`."""
  classes = getattr(source, "classes", None)
  if cond.kind == "class" and classes and len(classes) != cond.num_classes:
    raise ValueError(f"cond.num_classes={cond.num_classes} but data.path has "
                     f"{len(classes)} class folders ({', '.join(classes[:3])}, ...)")
  if cond.kind != "image_embed":
    return source
  if not data.get("clip_cache", ""):
    raise ValueError("cond.kind='image_embed' needs data.clip_cache, the CLIP embeddings "
                     "of the clips' centre frames: python -m videofusion_jax.tools.clip_cache "
                     "--config=<this config> --clip=<converted CLIP> --out=<file.npz>")
  return ClipCacheSource(source, data.clip_cache, name=data.source)


def check_class_ids(ids, num_classes: int, what: str = "class id") -> np.ndarray:
  """Integer ids in [0, num_classes), or a ValueError naming the first bad one."""
  ids = np.asarray(ids)
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"{what} values {ids[:4]}... are not integers")
  bad = ids[(ids < 0) | (ids >= num_classes)]
  if bad.size:
    raise ValueError(f"{what} {int(bad[0])} is outside [0, cond.num_classes={num_classes})")
  return ids.astype(np.int32)
