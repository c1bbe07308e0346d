"""The condition of each sampled video, from the `sample` config section.

A class-conditioned model samples `sample.class_id` (or the classes in turn); an
image-embedding model samples the CLIP image embeddings stored in `sample.image_embeds`
(an npz with an `image_embeds` (K, D) array, such as a `clip_cache` file: videos that
vary the clips' centre frames), one per video in turn.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
from absl import logging

from videofusion_jax.data.conditions import check_class_ids
from videofusion_jax.models.conditioning import ConditionConfig


def sample_conditions(config: ml_collections.ConfigDict, cond: ConditionConfig,
                      num_videos: int) -> dict[str, np.ndarray] | None:
  """{input name: (num_videos, ...)} for the model's condition, or None if unconditioned."""
  if not cond.enabled:
    return None
  s = config.sample
  if cond.kind == "class":
    class_id = int(s.get("class_id", -1))
    if class_id < 0:
      ids = np.arange(num_videos) % cond.num_classes
      logging.info("Sampling classes 0..%d in turn (set sample.class_id for one).",
                   min(num_videos, cond.num_classes) - 1)
    else:
      ids = np.full((num_videos,), class_id)
    return {"class_id": check_class_ids(ids, cond.num_classes, "sample.class_id")}
  path = s.get("image_embeds", "")
  if not path:
    raise ValueError("cond.kind='image_embed': set sample.image_embeds to an npz of CLIP "
                     "image embeddings (e.g. a clip_cache file)")
  if not Path(path).is_file():
    raise FileNotFoundError(f"sample.image_embeds={path} does not exist")
  with np.load(path) as f:
    if "image_embeds" not in f:
      raise ValueError(f"{path} has no 'image_embeds' array; it has {sorted(f.files)}")
    embeds = np.asarray(f["image_embeds"], np.float32)
  if embeds.ndim != 2 or embeds.shape[1] != cond.embed_dim:
    raise ValueError(f"{path}: image_embeds has shape {embeds.shape}; expected "
                     f"(K, cond.embed_dim={cond.embed_dim})")
  return {"image_embed": embeds[np.arange(num_videos) % len(embeds)]}
