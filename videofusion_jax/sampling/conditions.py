"""The condition of each sampled video, from the `sample` config section.

A class-conditioned model samples `sample.class_id` (or the classes in turn). An
image-embedding model (the paper's text-to-video set-up, Sec 4.1) samples either
  * text: `sample.prompt` or `sample.prompts_file` (one prompt per line), through the
    CLIP text tower (`sample.clip_dir`, from `convert clip`) and the diffusion prior
    (`sample.prior_workdir`, from `train_prior` or `convert diffusers-prior`); an empty
    prompt means unconditional (the video model's null condition too), or
  * the CLIP image embeddings stored in `sample.image_embeds` (an npz with an
    `image_embeds` (K, D) array, such as a clip_cache file: videos that vary the
    clips' centre frames).
A converted unCLIP decoder (cond.kind "unclip", Karlo) also reads the prompt's CLIP text
embedding, hidden states and mask: the prompt's from the text tower, or a clip cache's
rows (`sample.image_embeds` made with `tools.clip_cache --text_hidden`); guidance's
unconditional branch gets the empty prompt's encoding with the learned null image
embedding (`null_text_*`, models/conditioning.py), as in Karlo's pipeline.
Video k takes condition k modulo how many there are.
"""

from __future__ import annotations

import ml_collections
import numpy as np
from absl import logging

from videofusion_jax import storage
from videofusion_jax.data.conditions import check_class_ids
from videofusion_jax.models.conditioning import ConditionConfig


def sample_conditions(
  config: ml_collections.ConfigDict, cond: ConditionConfig, num_videos: int
) -> dict[str, np.ndarray] | None:
  """{input name: (num_videos, ...)} for the model's condition, or None if unconditioned."""
  if not cond.enabled:
    return None
  s = config.sample
  if cond.kind == "class":
    class_id = int(s.class_id)
    if class_id < 0:
      ids = np.arange(num_videos) % cond.num_classes
      logging.info(
        "Sampling classes 0..%d in turn (set sample.class_id for one).",
        min(num_videos, cond.num_classes) - 1,
      )
    else:
      ids = np.full((num_videos,), class_id)
    return {"class_id": check_class_ids(ids, cond.num_classes, "sample.class_id")}
  prompts = read_prompts(s)
  if prompts:
    return _prompt_conditions(s, cond, [prompts[k % len(prompts)] for k in range(num_videos)])
  path = s.image_embeds
  if not path:
    raise ValueError(
      f"cond.kind={cond.kind!r}: give a text prompt (--prompt or "
      "--prompts_file, with sample.clip_dir and sample.prior_workdir) or "
      "sample.image_embeds, an npz of CLIP image embeddings"
      + (" and text inputs (a clip cache made with --text_hidden)" if cond.kind == "unclip" else "")
    )
  if not storage.path(path).is_file():
    raise FileNotFoundError(f"sample.image_embeds={path} does not exist")
  names = ("image_embeds",) + (UNCLIP_CACHE_ARRAYS if cond.kind == "unclip" else ())
  with storage.path(path).open("rb") as file, np.load(file) as f:
    missing = [n for n in names if n not in f.files]
    if missing:
      raise ValueError(
        f"sample.image_embeds={path} has no {missing} array(s); it has "
        f"{sorted(f.files)}"
        + (
          " (cond.kind='unclip' needs a clip cache made with --text_hidden)"
          if cond.kind == "unclip"
          else ""
        )
      )
    arrays = {n: np.asarray(f[n]) for n in names}
  embeds = arrays["image_embeds"].astype(np.float32)
  if embeds.ndim != 2 or embeds.shape[1] != cond.embed_dim:
    raise ValueError(
      f"{path}: image_embeds has shape {embeds.shape}; expected "
      f"(K, cond.embed_dim={cond.embed_dim})"
    )
  rows = np.arange(num_videos) % len(embeds)
  out = {"image_embed": embeds[rows]}
  if cond.kind == "unclip":
    text = {k: arrays[k][rows] for k in ("text_embeds", "text_hidden", "text_mask")}
    null = {k[len("null_") :]: arrays[k] for k in UNCLIP_CACHE_ARRAYS if k.startswith("null_")}
    out.update(unclip_text_inputs(text, null, cond, f"sample.image_embeds={path}"))
  return out


UNCLIP_CACHE_ARRAYS = (
  "text_embeds",
  "text_hidden",
  "text_mask",
  "null_text_embeds",
  "null_text_hidden",
  "null_text_mask",
)


def unclip_text_inputs(
  text: dict, null: dict, cond: ConditionConfig, where: str
) -> dict[str, np.ndarray]:
  """text_embeds (K, D), text_hidden (K, L, W), text_mask (K, L) and the empty prompt's
  (unbatched) -> the unclip condition's text entries, the null repeated per video."""
  k = len(text["text_embeds"])
  if text["text_embeds"].shape[1:] != (cond.embed_dim,):
    raise ValueError(
      f"{where}: text embeddings of shape {text['text_embeds'].shape}; "
      f"cond.kind='unclip' expects (K, cond.embed_dim={cond.embed_dim})"
    )
  if text["text_hidden"].ndim != 3 or text["text_hidden"].shape[2] != cond.text_dim:
    raise ValueError(
      f"{where}: text hidden states of shape {text['text_hidden'].shape}; "
      f"cond.kind='unclip' expects (K, L, cond.text_dim={cond.text_dim})"
    )
  out = {n: np.asarray(v, bool if n.endswith("mask") else np.float32) for n, v in text.items()}
  for n, v in null.items():
    v = np.asarray(v, bool if n.endswith("mask") else np.float32)
    out[f"null_{n}"] = np.broadcast_to(v, (k,) + v.shape).copy()
  return out


def read_prompts(s: ml_collections.ConfigDict) -> list[str]:
  """`sample.prompt`, or the lines of `sample.prompts_file` ([] when neither is set)."""
  path = s.prompts_file
  if path:
    if not storage.path(path).is_file():
      raise FileNotFoundError(f"sample.prompts_file={path} does not exist")
    prompts = storage.path(path).read_text(encoding="utf-8").splitlines()
    if not prompts:
      raise ValueError(f"sample.prompts_file={path} is empty; expected one prompt per line")
    return prompts
  prompt = s.prompt
  return [] if prompt is None else [prompt]


def _prompt_conditions(s, cond: ConditionConfig, prompts: list[str]) -> dict[str, np.ndarray]:
  """Prompts -> CLIP text tower -> prior -> image embeddings (and `drop` for empty ones)."""
  import jax  # pylint: disable=import-outside-toplevel

  from videofusion_jax.convert.clip_checkpoint import load_clip  # pylint: disable=import-outside-toplevel
  from videofusion_jax.sampling.prior import (
    encode_prompts,
    load_prior,  # pylint: disable=import-outside-toplevel
    prompt_image_embeds,
  )

  for field in ("clip_dir", "prior_workdir"):
    if not s[field]:
      raise ValueError(
        f"text prompts need sample.{field} (the converted CLIP folder and "
        "the prior's workdir or converted folder)"
      )
  clip = load_clip(s.clip_dir)
  prior, schedule = load_prior(s.prior_workdir)
  embeds = np.asarray(
    prompt_image_embeds(
      prior,
      schedule,
      clip,
      prompts,
      key=jax.random.key(s.base_seed),
      guidance_scale=s.prior_guidance_scale,
    ),
    np.float32,
  )
  if embeds.shape[1] != cond.embed_dim:
    raise ValueError(
      f"the prior in {s.prior_workdir} makes {embeds.shape[1]}-d embeddings; "
      f"the video model takes cond.embed_dim={cond.embed_dim}"
    )
  empty = np.array([not p.strip() for p in prompts])
  out = {"image_embed": embeds, "drop": empty}
  if cond.kind == "unclip":  # the decoder reads the prompt's text encoding too
    text, null = encode_prompts(clip, [p.strip() for p in prompts])
    out.update(unclip_text_inputs(text, null, cond, f"sample.clip_dir={s.clip_dir}"))
  return out
