"""Precompute CLIP embeddings of a data source's centre frames and captions into an npz.

  python -m videofusion_jax.tools.clip_cache --config=configs/webvid.py --clip=CLIP_DIR \
      --out=cache.npz [--limit=K] [--batch_size=32] [--text_hidden]

Video training conditions on the CLIP image embedding of the real centre frame and the
prior learns text -> image embedding (paper Sec 4.1); encoding the frames every step
would spend accelerator time on a frozen network, so it is done once here. CLIP_DIR is
the output of `python -m videofusion_jax.convert clip` (both towers and the tokenizer).
Row i describes item i of the source built from `config.data` (seed `config.seed`):

  image_embeds (K, D) float32   CLIP image embedding of frame (N - 1) // 2
  text_embeds  (K, D) float32   CLIP text embedding of the caption ("" when none)
  text_tokens  (K, L) int32     the caption's token ids (bos, ..., eos, padding)
  text_hidden  (K, L, W) float32  last hidden states of the text tower (--text_hidden)
  text_mask    (K, L) bool      tokens up to and including the first end-of-text
  keys         (K,) str         the clip's key/videoid/path, else "SOURCE:index"
  captions     (K,) str         the captions ("" for a caption-less source)
  class_ids    (K,) int32       the items' "label", when every item has one
  null_text_embeds (D,), null_text_tokens (L,), null_text_mask (L,) [, null_text_hidden
  (L, W)]                       the empty prompt's encoding (the unconditional input)

`ClipCacheSource` wraps the same source for training: item i gains `image_embed` (and
`text_hidden`, `caption`) from row i, after checking that the rows belong to its clips.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from videofusion_jax import storage
from videofusion_jax.convert.clip_checkpoint import load_clip
from videofusion_jax.data.clip_cache_source import ClipCacheSource, clip_key  # noqa: F401 (re-export)
from videofusion_jax.data.sources import make_source
from videofusion_jax.models.clip import preprocess_frames


def _jitted(module: nnx.Module):
  graphdef, state = nnx.split(module)
  fn = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  return lambda x: fn(state, x)


def _batches(n: int, size: int):
  for start in range(0, n, size):
    yield start, min(start + size, n)


def _padded(x: np.ndarray, size: int) -> np.ndarray:
  """Pad the leading axis to `size` (one compiled shape for every batch)."""
  return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]) if len(x) < size else x


def build_clip_cache(
  config: ml_collections.ConfigDict,
  clip_dir: str | os.PathLike,
  out: str | os.PathLike,
  *,
  batch_size: int = 32,
  limit: int = 0,
  text_hidden: bool = False,
  source: Sequence[dict] | None = None,
) -> Path:
  """Encode `source` (default: `make_source(config.data)`) and write the npz `out`."""
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}; expected >= 1")
  if limit < 0:
    raise ValueError(f"limit={limit}; expected >= 0 (0: the whole source)")
  clip = load_clip(clip_dir)
  vision, text, tokenizer = (
    clip.require("vision"),
    clip.require("text"),
    clip.require("tokenizer"),
  )
  if source is None:
    if config.data.channels != 3:
      raise ValueError(f"data.channels={config.data.channels}; CLIP reads RGB frames (3)")
    source = make_source(config.data, seed=config.seed)
  name = config.data.source
  count = min(len(source), limit) if limit else len(source)
  if count == 0:
    raise ValueError(f"data.source={name!r} holds no videos")
  encode_image = _jitted(vision)
  encode_text = _jitted(text)
  size = clip.config.vision.image_size

  image_embeds, keys, captions, labels = [], [], [], []
  for start, stop in _batches(count, batch_size):
    frames = []
    for i in range(start, stop):
      item = source[i]
      video = np.asarray(item["video"])
      if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(
          f"item {i} of data.source={name!r} has video shape {video.shape}; expected (N, H, W, 3)"
        )
      frames.append(video[(video.shape[0] - 1) // 2])
      keys.append(clip_key(source, item, i, name))
      caption = item.get("caption", "")
      captions.append(caption if isinstance(caption, str) else str(np.asarray(caption)))
      labels.append(int(item["label"]) if "label" in item else None)
    pixels = preprocess_frames(jnp.asarray(_padded(np.stack(frames), batch_size)), size)
    image_embeds.append(np.asarray(encode_image(pixels)[1])[: stop - start])
    logging.info("CLIP cache: %d / %d centre frames encoded", stop, count)

  # Captions repeat (every caption-less clip has ""): encode each distinct one once.
  distinct = sorted(set(captions) | {""})
  tokens = tokenizer(distinct)
  text_out = {"embeds": [], "hidden": []}
  for start, stop in _batches(len(distinct), batch_size):
    hidden, embeds = encode_text(jnp.asarray(_padded(tokens[start:stop], batch_size)))
    text_out["embeds"].append(np.asarray(embeds)[: stop - start])
    if text_hidden:
      text_out["hidden"].append(np.asarray(hidden)[: stop - start])
  position = {c: k for k, c in enumerate(distinct)}
  row = np.asarray([position[c] for c in captions], np.int64)
  text_embeds = np.concatenate(text_out["embeds"]).astype(np.float32)
  # CLIP pools at the first end-of-text token; later positions are padding.
  first_eos = np.argmax(tokens == tokenizer.eos_id, axis=1)
  mask = np.arange(tokens.shape[1])[None, :] <= first_eos[:, None]
  null = position[""]
  arrays = {
    "image_embeds": np.concatenate(image_embeds).astype(np.float32),
    "text_embeds": text_embeds[row],
    "text_tokens": tokens[row].astype(np.int32),
    "text_mask": mask[row],
    "keys": np.asarray(keys, dtype=str),
    "captions": np.asarray(captions, dtype=str),
    "null_text_embeds": text_embeds[null],
    "null_text_tokens": tokens[null].astype(np.int32),
    "null_text_mask": mask[null],
  }
  if text_hidden:
    hidden = np.concatenate(text_out["hidden"]).astype(np.float32)
    arrays["text_hidden"], arrays["null_text_hidden"] = hidden[row], hidden[null]
  if all(label is not None for label in labels):
    arrays["class_ids"] = np.asarray(labels, np.int32)
  return _write_npz(out, arrays)


def _write_npz(out: str | Path, arrays: dict) -> Path:
  """Write atomically: a temporary file in the same folder, renamed when complete (on
  GCS: a local temporary file, uploaded when complete)."""
  out = storage.absolute(out)
  if out.suffix != ".npz":
    raise ValueError(f"--out={out}; expected a path ending in .npz")
  if storage.is_remote(out):
    with storage.local_then_upload(out) as tmp:
      np.savez(tmp, **arrays)
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".npz", dir=out.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, out)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  return out


def _define_flags() -> None:
  """The CLI's flags, defined only when run as a program: tests and notebooks import
  this module next to others that define --out/--config (convert's CLI) in one process."""
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
  flags.DEFINE_string("clip", None, "Converted CLIP folder (convert clip --out).")
  flags.DEFINE_string("out", None, "Output .npz file.")
  flags.DEFINE_integer("batch_size", 32, "Frames / captions per CLIP call.")
  flags.DEFINE_integer("limit", 0, "Encode only the first K clips (0: all).")
  flags.DEFINE_bool(
    "text_hidden",
    False,
    "Also store the text tower's last hidden states "
    "(K, L, W): large; cond.kind='unclip' needs them.",
  )


def main(argv):
  del argv
  f = flags.FLAGS
  if not f.clip or not f.out:
    raise app.UsageError("--clip and --out are required")
  out = build_clip_cache(
    f.config, f.clip, f.out, batch_size=f.batch_size, limit=f.limit, text_hidden=f.text_hidden
  )
  print(f"wrote {out}")


if __name__ == "__main__":
  _define_flags()
  flags.mark_flags_as_required(["config"])
  app.run(main)
