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
Video k takes condition k modulo how many there are.
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
  prompts = read_prompts(s)
  if prompts:
    return _prompt_conditions(s, cond, [prompts[k % len(prompts)] for k in range(num_videos)])
  path = s.get("image_embeds", "")
  if not path:
    raise ValueError("cond.kind='image_embed': give a text prompt (--prompt or "
                     "--prompts_file, with sample.clip_dir and sample.prior_workdir) or "
                     "sample.image_embeds, an npz of CLIP image embeddings")
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


def read_prompts(s: ml_collections.ConfigDict) -> list[str]:
  """`sample.prompt`, or the lines of `sample.prompts_file` ([] when neither is set)."""
  path = s.get("prompts_file", "")
  if path:
    if not Path(path).is_file():
      raise FileNotFoundError(f"sample.prompts_file={path} does not exist")
    prompts = Path(path).read_text(encoding="utf-8").splitlines()
    if not prompts:
      raise ValueError(f"sample.prompts_file={path} is empty; expected one prompt per line")
    return prompts
  prompt = s.get("prompt", None)
  return [] if prompt is None else [prompt]


def _prompt_conditions(s, cond: ConditionConfig, prompts: list[str]) -> dict[str, np.ndarray]:
  """Prompts -> CLIP text tower -> prior -> image embeddings (and `drop` for empty ones)."""
  import jax  # pylint: disable=import-outside-toplevel
  from videofusion_jax.convert.clip_checkpoint import load_clip  # pylint: disable=import-outside-toplevel
  from videofusion_jax.prior_sampling import load_prior, prompt_image_embeds  # pylint: disable=import-outside-toplevel
  for field in ("clip_dir", "prior_workdir"):
    if not s.get(field, ""):
      raise ValueError(f"text prompts need sample.{field} (the converted CLIP folder and "
                       "the prior's workdir or converted folder)")
  clip = load_clip(s.clip_dir)
  prior, schedule = load_prior(s.prior_workdir)
  embeds = np.asarray(prompt_image_embeds(
      prior, schedule, clip, prompts, key=jax.random.key(s.base_seed),
      guidance_scale=s.get("prior_guidance_scale", 4.0)), np.float32)
  if embeds.shape[1] != cond.embed_dim:
    raise ValueError(f"the prior in {s.prior_workdir} makes {embeds.shape[1]}-d embeddings; "
                     f"the video model takes cond.embed_dim={cond.embed_dim}")
  empty = np.array([not p.strip() for p in prompts])
  return {"image_embed": embeds, "drop": empty}
