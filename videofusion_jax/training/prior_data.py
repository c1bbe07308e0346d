"""What the prior trains on: CLIP (image, text) embedding pairs from an npz cache.

The cache (written by `python -m videofusion_jax.tools.clip_cache`) holds `image_embeds`
(K, D) f32 and `text_embeds` (K, Dp) f32, optionally `text_hidden` (K, L, D) with
`text_tokens` (K, L) or `text_mask` (K, L), `class_ids` (K,) for a class-conditioned
prior, and the CLIP encoding of the empty text as `null_text_embeds` (Dp,),
`null_text_hidden` (L, D), `null_text_tokens`/`null_text_mask` (L,) (the unconditional
condition when the prior has no learned one). Without `text_mask`, a caption's mask is
its tokens up to and including the first end-of-text token, CLIP's largest id (where
CLIP pools too).

`synthetic_prior_data` makes a set where the image embedding is a known function of the
condition, so a short training run can be checked against it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from videofusion_jax import storage

PRECOMPUTE_HINT = (
  "make it with the CLIP precompute script: python -m "
  "videofusion_jax.tools.clip_cache --config=configs/webvid.py "
  "--clip=CONVERTED_CLIP_DIR --out=PATH --text_hidden (docs/conditioning.md, "
  "CLIP section)"
)


@dataclasses.dataclass
class PriorData:
  """Host arrays; `batch(indices)` gathers a training batch."""

  image_embeds: np.ndarray  # (K, D)
  text_embeds: np.ndarray | None = None  # (K, Dp)
  text_hidden: np.ndarray | None = None  # (K, L, D)
  text_mask: np.ndarray | None = None  # (K, L) bool
  class_ids: np.ndarray | None = None  # (K,) int32
  null: dict | None = None  # empty-text condition, unbatched

  def __len__(self) -> int:
    return self.image_embeds.shape[0]

  def batch(self, indices: np.ndarray) -> dict:
    out = {"image_embeds": self.image_embeds[indices]}
    for name in ("text_embeds", "text_hidden", "text_mask", "class_ids"):
      value = getattr(self, name)
      if value is not None:
        out[name] = value[indices]
    return out

  def stats(self) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (1, D) of the image embeddings (clip_mean/clip_std)."""
    x = self.image_embeds.astype(np.float64)
    return (
      x.mean(0, keepdims=True).astype(np.float32),
      np.maximum(x.std(0, keepdims=True), 1e-6).astype(np.float32),
    )


def mask_from_tokens(tokens: np.ndarray) -> np.ndarray:
  """(..., L) token ids -> bool mask through the first end-of-text (largest) id."""
  tokens = np.asarray(tokens)
  eot = np.argmax(tokens, axis=-1)
  return np.arange(tokens.shape[-1]) <= eot[..., None]


def _mask(z, prefix: str):
  if f"{prefix}_mask" in z:
    return np.asarray(z[f"{prefix}_mask"]).astype(bool)
  if f"{prefix}_tokens" in z:
    return mask_from_tokens(z[f"{prefix}_tokens"])
  return None


def read_clip_cache(path: str | Path) -> PriorData:
  """The npz cache at `path` as PriorData; ValueError naming any bad array."""
  path = storage.path(path)  # local or gs://
  if not str(path) or not path.is_file():
    raise FileNotFoundError(f"data.clip_cache={str(path)!r} does not exist; {PRECOMPUTE_HINT}")
  with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
    if "image_embeds" not in z:
      raise ValueError(f"{path} has no 'image_embeds' array (has {sorted(z.files)})")
    image = np.asarray(z["image_embeds"], np.float32)
    if image.ndim != 2 or image.shape[0] < 1:
      raise ValueError(f"{path}: image_embeds has shape {image.shape}; expected (K, D)")
    k = image.shape[0]
    get = lambda n, dt: np.asarray(z[n], dt) if n in z else None
    data = PriorData(
      image,
      get("text_embeds", np.float32),
      get("text_hidden", np.float32),
      _mask(z, "text"),
      get("class_ids", np.int32),
    )
    if "null_text_embeds" in z:
      data.null = {"text_embeds": get("null_text_embeds", np.float32).reshape(-1)}
      if "null_text_hidden" in z:
        data.null["text_hidden"] = get("null_text_hidden", np.float32).reshape(
          z["null_text_hidden"].shape[-2:]
        )
        mask = _mask(z, "null_text")
        data.null["text_mask"] = (
          mask.reshape(-1)
          if mask is not None
          else np.ones(data.null["text_hidden"].shape[:1], bool)
        )
  for name in ("text_embeds", "text_hidden", "text_mask", "class_ids"):
    value = getattr(data, name)
    if value is not None and value.shape[0] != k:
      raise ValueError(f"{path}: {name} has {value.shape[0]} rows; image_embeds has {k}")
  if data.text_hidden is not None and data.text_mask is None:
    data.text_mask = np.ones(data.text_hidden.shape[:2], bool)
  return data


def synthetic_prior_data(
  num: int,
  dim: int,
  *,
  num_tokens: int = 0,
  num_classes: int = 0,
  noise: float = 0.05,
  seed: int = 0,
  function_seed: int = 0,
) -> PriorData:
  """Image embedding = a fixed random function of the condition, plus a little noise.

  Text: unit text embeddings t, image = normalise(tanh(t W) * 3 + noise), W fixed; hidden
  states are t plus token noise, with random lengths. Classes: one centre per class.
  W, the class centres and the null encoding come from `function_seed`, the examples
  from `seed`: sets with different seeds share the function (train / held-out).
  """
  fixed = np.random.RandomState(function_seed)
  rng = np.random.RandomState([function_seed, seed])
  unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  null = None
  if num_classes:
    centres = unit(fixed.randn(num_classes, dim))
    class_ids = rng.randint(0, num_classes, size=num).astype(np.int32)
    image = centres[class_ids] + noise * rng.randn(num, dim)
    return PriorData(unit(image).astype(np.float32), class_ids=class_ids)
  w = fixed.randn(dim, dim) / np.sqrt(dim)
  text = unit(rng.randn(num, dim))
  image = unit(np.tanh(3.0 * text @ w) + noise * rng.randn(num, dim))
  data = PriorData(image.astype(np.float32), text.astype(np.float32))
  null = {"text_embeds": unit(fixed.randn(dim)).astype(np.float32)}
  if num_tokens:
    hidden = text[:, None, :] + 0.5 * rng.randn(num, num_tokens, dim)
    lengths = rng.randint(1, num_tokens + 1, size=num)
    data.text_hidden = hidden.astype(np.float32)
    data.text_mask = np.arange(num_tokens)[None, :] < lengths[:, None]
    null["text_hidden"] = (0.5 * fixed.randn(num_tokens, dim)).astype(np.float32)
    null["text_mask"] = np.arange(num_tokens) < 2
  data.null = null
  return data


def write_clip_cache(path: str | Path, data: PriorData) -> Path:
  """Save PriorData in the cache layout read by `read_clip_cache` (tests, synthetic)."""
  arrays = {"image_embeds": data.image_embeds}
  for name in ("text_embeds", "text_hidden", "text_mask", "class_ids"):
    if getattr(data, name) is not None:
      arrays[name] = getattr(data, name)
  for name, value in (data.null or {}).items():
    arrays[f"null_{name}"] = value
  path = Path(path)
  np.savez(path, **arrays)
  return path
