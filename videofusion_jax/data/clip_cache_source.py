"""A clip source joined, row by row, with its CLIP embedding cache (`tools/clip_cache.py`).

Kept apart from the cache builder, whose module defines command-line flags: the train
CLI imports this one.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from videofusion_jax import storage
from videofusion_jax.data.folders import item_at_epoch

KEY_FIELDS = ("key", "videoid", "path")
# What cond.kind="unclip" reads besides image_embeds: per-row caption encodings and the
# empty prompt's (the input of clips dropped for classifier-free guidance).
TEXT_ARRAYS = ("text_embeds", "text_hidden", "text_mask")
NULL_TEXT_ARRAYS = ("null_text_embeds", "null_text_hidden", "null_text_mask")


def clip_key(source: Any, item: dict, index: int, name: str) -> str:
  """What identifies item `index` in a cache: its key/videoid/path, else SOURCE:index."""
  for field in KEY_FIELDS:
    if field in item:
      return str(item[field])
  paths = getattr(source, "paths", None) or getattr(getattr(source, "folder", None), "paths", None)
  if paths is not None:
    return str(paths[index])
  return f"{name}:{index}"


class ClipCacheSource:
  """`source` whose item i also carries row i of the cache at `path`.

  Adds `image_embed` (D,) float32, `caption`, and `text_hidden` (L, W) when the cache
  has it. With `text_inputs` (cond.kind "unclip") also `text_embeds` (D,), `text_mask`
  (L,) bool and the empty prompt's `null_text_embeds`, `null_text_hidden`,
  `null_text_mask` (the same in every item), all required. Raises ValueError when the
  cache lacks them, has a different number of rows, or its keys are not those of the
  source's clips (a cache made from other data or settings).
  """

  def __init__(
    self,
    source: Sequence[dict],
    path: str | os.PathLike,
    *,
    name: str = "source",
    text_inputs: bool = False,
  ):
    path = storage.path(path)  # local or gs://
    if not path.is_file():
      raise FileNotFoundError(
        f"data.clip_cache={str(path)!r} does not exist; make it with "
        "python -m videofusion_jax.tools.clip_cache"
      )
    with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
      missing = [k for k in ("image_embeds", "keys", "captions") if k not in z.files]
      if missing:
        raise ValueError(f"{path} lacks {missing} (has {sorted(z.files)}); not a CLIP cache")
      self.image_embeds = np.asarray(z["image_embeds"], np.float32)
      self.keys = z["keys"].tolist()
      self.captions = z["captions"].tolist()
      self.text_hidden = (
        np.asarray(z["text_hidden"], np.float32) if "text_hidden" in z.files else None
      )
      self.text = {}
      if text_inputs:
        missing = [k for k in TEXT_ARRAYS + NULL_TEXT_ARRAYS if k not in z.files]
        if missing:
          raise ValueError(
            f"data.clip_cache={str(path)!r} lacks {missing} (has {sorted(z.files)}); "
            "cond.kind='unclip' reads the captions' CLIP text embeddings, hidden states "
            "and masks, and the empty prompt's: rebuild it with python -m "
            "videofusion_jax.tools.clip_cache --config=<this config> --clip=<CLIP> "
            "--out=<file.npz> --text_hidden"
          )
        self.text = {
          k: np.asarray(z[k], bool if k.endswith("mask") else np.float32)
          for k in TEXT_ARRAYS + NULL_TEXT_ARRAYS
          if k != "text_hidden"
        }
    if len(self.keys) != len(source):
      raise ValueError(
        f"{path} has {len(self.keys)} rows; data.source={name!r} has "
        f"{len(source)} videos (rebuild the cache for this data config)"
      )
    for i in sorted({0, len(source) // 2, len(source) - 1}):  # reads three clips
      want = clip_key(source, source[i], i, name)
      if self.keys[i] != want:
        raise ValueError(
          f"{path} row {i} is for {self.keys[i]!r}, but video {i} of "
          f"data.source={name!r} is {want!r} (rebuild the cache)"
        )
    self.source = source
    self.path = path

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    return self.at_epoch(index, 0)

  def at_epoch(self, index: int, epoch: int) -> dict:
    """Epoch `epoch`'s clip with row `index`. The row is per video: a video folder with
    random_start reads a new window each epoch, while the cached image embedding stays
    that of epoch 0's window (the one the cache was built from)."""
    item = dict(item_at_epoch(self.source, index, epoch))
    item["image_embed"] = self.image_embeds[index]
    item.setdefault("caption", self.captions[index])
    if self.text_hidden is not None:
      item["text_hidden"] = self.text_hidden[index]
    for k, v in self.text.items():
      item[k] = v if k.startswith("null_") else v[index]
    return item
