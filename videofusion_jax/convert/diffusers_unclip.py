"""A whole diffusers unCLIP pipeline folder (Karlo) -> our converted folders, in one call.

  python -m videofusion_jax.convert unclip --src=PIPELINE_DIR --out=OUT_DIR

PIPELINE_DIR is what `UnCLIPPipeline.save_pretrained` writes (e.g. a local copy of
`kakaobrain/karlo-v1-alpha`): `model_index.json` and one subfolder per component.
OUT_DIR receives, each written by the per-kind converter:

  decoder/            the decoder U-Net (`diffusers-unet`), with `condition/`: the
                      `text_proj` weights as our cond.kind="unclip" Condition, and a
                      `config_snippet.py` making it VideoFusion's base generator
                      (train.init_base_from=OUT_DIR/decoder loads both)
  prior/              the PriorTransformer (`diffusers-prior`)
  super_res_first/    the super-resolution U-Nets (`diffusers-unet`), each with a
  super_res_last/     `config_snippet.py` for model.kind="superres" (aug_embedding=False)
  clip/               text_encoder/ + tokenizer/ (`clip`)
  schedulers/         the pipeline's scheduler configs, copied
  unclip_pipeline.json  what was converted, what was skipped

A component whose subfolder is absent is skipped with a logged line; one that fails to
convert stops the conversion with an error naming its subfolder, and nothing is left
under OUT_DIR (everything is written under a temporary name and renamed at the end).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from videofusion_jax import storage
from videofusion_jax.convert.converted import SNIPPET_FILE, load_converted, save_converted
from videofusion_jax.convert.diffusers_prior import convert_diffusers_prior
from videofusion_jax.convert.diffusers_unet import (
  Entry,
  apply_param_table,
  param_table,
  read_diffusers_unet,
)
from videofusion_jax.convert.folder import (
  atomic_folder,
  read_converted_config,
  restore_params,
  write_converted,
)
from videofusion_jax.convert.transformers_clip import convert_transformers_clip
from videofusion_jax.convert.weights import find_weights_file, read_json, read_weights
from videofusion_jax.models import superres as superres_lib
from videofusion_jax.models.conditioning import Condition, ConditionConfig
from videofusion_jax.models.from_config import unet_fields
from videofusion_jax.models.unet import UNetConfig

CONDITION_DIR = "condition"
CONDITION_FILE = "condition_config.json"
SUMMARY_FILE = "unclip_pipeline.json"
# Our Condition (kind "unclip") attribute -> diffusers UnCLIPTextProjModel name.
TEXT_PROJ_NAMES = {
  "null_embed": "learned_classifier_free_guidance_embeddings",
  "embedding_proj": "embedding_proj",
  "image_time_proj": "clip_image_embeddings_project_to_time_embeddings",
  "extra_tokens": "clip_extra_context_tokens_proj",
  "text_proj": "encoder_hidden_states_proj",
  "text_norm": "text_encoder_hidden_states_norm",
}
TEXT_PROJ_FIELDS = (
  "clip_extra_context_tokens",
  "clip_embeddings_dim",
  "time_embed_dim",
  "cross_attention_dim",
)
# U-Net fields a VideoFusion config derives from cond (model.base must leave them unset).
CONDITION_UNET_FIELDS = (
  "class_embed_type",
  "num_class_embeds",
  "class_embed_input_dim",
  "cross_attention_dim",
)


# ---------------------------------------------------------------- text_proj -> Condition


def condition_config_from_text_proj(hf: Mapping[str, Any]) -> ConditionConfig:
  """text_proj/config.json -> ConditionConfig(kind="unclip") with the same sizes."""
  name = hf.get("_class_name", "UnCLIPTextProjModel")
  if name != "UnCLIPTextProjModel":
    raise ValueError(f"_class_name={name!r}; expected 'UnCLIPTextProjModel'")
  missing = [f for f in ("time_embed_dim", "cross_attention_dim") if hf.get(f) is None]
  if missing:
    raise ValueError(f"UnCLIPTextProjModel config lacks {missing} (they have no default)")
  clip_dim = int(hf.get("clip_embeddings_dim", 768))
  config = ConditionConfig(
    kind="unclip",
    embed_dim=clip_dim,
    extra_tokens=int(hf.get("clip_extra_context_tokens", 4)),
    text_dim=clip_dim,
    context_dim=int(hf["cross_attention_dim"]),
    time_embed_dim=int(hf["time_embed_dim"]),
  )
  config.validate()
  return config


def abstract_condition(config: ConditionConfig) -> Condition:
  return nnx.eval_shape(lambda: Condition(config, rngs=nnx.Rngs(0)))


def text_proj_table(module: Condition) -> list[Entry]:
  """One Entry per parameter of an unclip Condition, torch names from TEXT_PROJ_NAMES."""
  entries = []
  for name, value in sorted(vars(module).items()):
    if isinstance(value, nnx.Variable):
      entries.append(Entry((name,), TEXT_PROJ_NAMES[name], "copy", tuple(value.shape)))
    elif isinstance(value, nnx.Module):
      prefix = TEXT_PROJ_NAMES[name]
      entries += [
        Entry((name,) + e.path, f"{prefix}.{e.torch_key}", e.transform, e.shape)
        for e in param_table(value)
      ]
  return entries


def convert_text_proj(state_dict: Mapping[str, np.ndarray], config: ConditionConfig) -> dict:
  """An UnCLIPTextProjModel state dict -> the pure parameter state of Condition(config)."""
  return apply_param_table(
    state_dict, text_proj_table(abstract_condition(config)), what="UnCLIPTextProjModel (text_proj)"
  )


def read_text_proj(src: str | Path, *, variant: str | None = None) -> tuple[ConditionConfig, dict]:
  src = Path(src)
  config = condition_config_from_text_proj(read_json(src / "config.json"))
  return config, convert_text_proj(read_weights(find_weights_file(src, variant=variant)), config)


def load_condition(path: str | Path) -> tuple[ConditionConfig, dict]:
  """(ConditionConfig, pure params) of a `condition/` folder written here."""
  saved = read_converted_config(
    path, CONDITION_FILE, "unCLIP condition", "unclip --src=PIPELINE_DIR --out=OUT_DIR"
  )
  config = ConditionConfig(**saved["condition"])
  abstract = abstract_condition(config)
  params = restore_params(
    path, nnx.to_pure_dict(nnx.state(abstract, nnx.Param)), "unCLIP condition", CONDITION_FILE
  )
  return config, jax.tree.map(np.asarray, params)


def condition_with_params(config: ConditionConfig, params: Mapping) -> Condition:
  abstract = abstract_condition(config)
  state = nnx.state(abstract, nnx.Param)
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, dict(params)))
  return nnx.merge(nnx.graphdef(abstract), state)


# ---------------------------------------------------------------- super-resolution U-Nets


def superres_config_for(
  unet: UNetConfig, *, image_size: int, low_res_size: int
) -> superres_lib.SuperResConfig:
  """Our SR model around a converted Karlo super-res U-Net (no augmentation embedding)."""
  if unet.in_channels % 2 or unet.class_embed_type is not None:
    raise ValueError(
      f"a super-resolution U-Net takes the noisy image and the upsampled one "
      f"(even in_channels) and no class embedding; got in_channels="
      f"{unet.in_channels}, class_embed_type={unet.class_embed_type!r}"
    )
  channels = unet.in_channels // 2
  if unet.out_channels not in (channels, 2 * channels):
    raise ValueError(
      f"super-resolution U-Net out_channels={unet.out_channels}; expected "
      f"{channels} (eps) or {2 * channels} (eps + variance)"
    )
  keep = {
    k: v for k, v in dataclasses.asdict(unet).items() if k not in superres_lib.DERIVED_UNET_FIELDS
  }
  return superres_lib.SuperResConfig(
    unet=UNetConfig(**keep),
    channels=channels,
    image_size=image_size,
    low_res_size=low_res_size,
    lam=0.0,
    learned_variance=unet.out_channels == 2 * channels,
    upsample="bicubic",
    aug_max_level=0.0,
    sample_aug_level=0.0,
    residual_input=False,
    aug_embedding=False,
  )


def superres_with_params(
  config: superres_lib.SuperResConfig, unet_params: Mapping
) -> superres_lib.SuperRes:
  """`SuperRes(config)` whose U-Net holds converted parameters (a pure nested dict)."""
  abstract = nnx.eval_shape(lambda: superres_lib.SuperRes(config, rngs=nnx.Rngs(0)))
  state = nnx.state(abstract, nnx.Param)
  nnx.replace_by_pure_dict(state, {"unet": jax.tree.map(jnp.asarray, dict(unet_params))})
  return nnx.merge(nnx.graphdef(abstract), state)


def superres_snippet(sr: superres_lib.SuperResConfig, out_dir: Path, src: Path) -> str:
  fields = superres_lib.unet_fields(sr.unet)
  return (
    "\n".join(
      [
        f'"""Generated by videofusion_jax.convert unclip from {src}.',
        "",
        "Karlo's super-resolution U-Net as model.kind='superres': the noisy frame and the",
        "bicubically upsampled low-res frame, no noise-augmentation embedding. Load the",
        "weights with videofusion_jax.convert.diffusers_unclip.load_superres(OUT).",
        "The pipeline runs super_res_first for all steps but the last and super_res_last",
        "for the last; so does our cascade (sample.py --superres_workdir=OUT/super_res_first).",
        '"""',
        "",
        "",
        "def apply(c):",
        "  c.model.kind = 'superres'",
        "  c.model.unet = dict(",
        *(f"      {k}={v!r}," for k, v in sorted(fields.items())),
        "  )",
        "  c.model.aug_embedding = False",
        "  c.model.residual_input = False",
        "  c.model.upsample = 'bicubic'",
        "  c.model.aug_max_level = 0.0",
        f"  c.model.learned_variance = {sr.learned_variance}",
        "  c.sample.aug_level = 0.0",
        f"  c.data.channels = {sr.channels}",
        f"  c.data.image_size = {sr.image_size}",
        f"  c.data.low_res_size = {sr.low_res_size}",
        "  c.diffusion.schedule = 'cosine'   # squaredcos_cap_v2",
        f"  # weights: {out_dir}",
      ]
    )
    + "\n"
  )


def load_superres(path: str | Path) -> superres_lib.SuperRes:
  """A `super_res_*` folder written here, as a ready-to-call SuperRes."""
  unet, params = load_converted(path)
  saved = read_converted_config(path, "unet_config.json", "U-Net", "unclip")
  sizes = saved["source"]
  sr = superres_config_for(
    unet, image_size=int(sizes["sample_size"]), low_res_size=int(sizes["low_res_size"])
  )
  return superres_with_params(sr, params)


# ---------------------------------------------------------------- the decoder's snippet


def decoder_snippet(
  unet: UNetConfig, cond: ConditionConfig, out_dir: Path, src: Path, sample_size: int | None
) -> str:
  fields = {k: v for k, v in unet_fields(unet).items() if k not in CONDITION_UNET_FIELDS}
  cond_fields = {f.name: getattr(cond, f.name) for f in dataclasses.fields(cond)}
  lines = [
    f'"""Generated by videofusion_jax.convert unclip from {src}.',
    "",
    "The unCLIP decoder as VideoFusion's base generator, conditioned like Karlo's",
    "decoder (cond.kind='unclip': CLIP image embedding, CLIP text embedding and text",
    "hidden states through the converted text_proj). Call apply(c) in get_config();",
    "train.init_base_from loads the decoder and the condition module.",
    '"""',
    "",
    "",
    "def apply(c):",
    "  c.model.base = dict(",
    *(f"      {k}={v!r}," for k, v in sorted(fields.items())),
    "  )",
    "  c.cond = dict(",
    *(f"      {k}={v!r}," for k, v in cond_fields.items()),
    "  )",
    f"  c.data.channels = {unet.in_channels}",
    f"  c.model.learned_variance = {unet.out_channels == 2 * unet.in_channels}",
    "  c.diffusion.schedule = 'cosine'   # decoder_scheduler: squaredcos_cap_v2, T=1000",
  ]
  if sample_size:
    lines.append(f"  c.data.image_size = {sample_size}")
  lines.append(f"  c.train.init_base_from = {str(out_dir)!r}")
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the pipeline


def _unet_source(src: Path, hf: Mapping[str, Any], **extra) -> dict:
  return {
    "path": str(src.absolute()),
    "class_name": hf.get("_class_name"),
    "diffusers_version": hf.get("_diffusers_version"),
    "sample_size": hf.get("sample_size"),
    **extra,
  }


def _decoder(src: Path, out: Path, final: Path, variant, allow_unused) -> dict:
  """decoder/ + text_proj/ into `out`/decoder (`final`: where `out` ends up)."""
  unet, params, hf = read_diffusers_unet(
    src / "decoder", variant=variant, allow_unused=allow_unused
  )
  save_converted(out / "decoder", params, unet, source=_unet_source(src / "decoder", hf))
  if not (src / "text_proj").is_dir():
    logging.info("unclip: %s has no text_proj/; decoder converted without its condition", src)
    return {"decoder": "converted", "text_proj": "skipped (absent)"}
  try:
    cond, cond_params = read_text_proj(src / "text_proj", variant=variant)
  except (ValueError, FileNotFoundError, KeyError) as e:
    raise ValueError(f"{src / 'text_proj'}: cannot convert the unCLIP text_proj ({e})") from e
  if cond.time_embed_dim != unet.time_embed_dim or cond.context_dim != unet.cross_attention_dim:
    raise ValueError(
      f"{src / 'text_proj'}: time_embed_dim={cond.time_embed_dim}, "
      f"cross_attention_dim={cond.context_dim} do not fit the decoder (time "
      f"embedding {unet.time_embed_dim}, cross_attention_dim "
      f"{unet.cross_attention_dim})"
    )
  write_converted(
    out / "decoder" / CONDITION_DIR,
    cond_params,
    CONDITION_FILE,
    {
      "condition": dataclasses.asdict(cond),
      "source": {"path": str((src / "text_proj").absolute())},
    },
  )
  (out / "decoder" / SNIPPET_FILE).write_text(
    decoder_snippet(unet, cond, final / "decoder", src, hf.get("sample_size"))
  )
  return {"decoder": "converted", "text_proj": "converted into decoder/condition"}


def _superres(
  src: Path, out: Path, final: Path, name: str, low_res_size: int, variant, allow_unused
) -> None:
  unet, params, hf = read_diffusers_unet(src / name, variant=variant, allow_unused=allow_unused)
  size = hf.get("sample_size") or 4 * low_res_size
  sr = superres_config_for(unet, image_size=int(size), low_res_size=low_res_size)
  sr.validate()
  save_converted(
    out / name, params, unet, source=_unet_source(src / name, hf, low_res_size=low_res_size)
  )
  (out / name / SNIPPET_FILE).write_text(superres_snippet(sr, final / name, src / name))


def convert_unclip_pipeline(
  src: str | Path,
  out: str | Path,
  *,
  variant: str | None = None,
  allow_unused: Iterable[str] = (),
  overwrite: bool = False,
) -> Path:
  """`python -m videofusion_jax.convert unclip`: every component of SRC into OUT."""
  src, out = Path(src).absolute(), storage.absolute(out)
  if not src.is_dir():
    raise FileNotFoundError(
      f"--src={src} is not a directory (expected a diffusers unCLIP "
      "pipeline folder with model_index.json)"
    )
  index = read_json(src / "model_index.json")
  if index.get("_class_name") not in ("UnCLIPPipeline", None):
    raise ValueError(
      f"{src / 'model_index.json'} has _class_name="
      f"{index.get('_class_name')!r}; expected 'UnCLIPPipeline'"
    )
  decoder_hf = (
    read_json(src / "decoder" / "config.json")
    if (src / "decoder" / "config.json").is_file()
    else {}
  )
  low_res = int(decoder_hf.get("sample_size") or 64)
  parts = {
    "decoder": lambda: _decoder(src, tmp, out, variant, allow_unused),
    "prior": lambda: convert_diffusers_prior(
      src / "prior", tmp / "prior", variant=variant, allow_unused=allow_unused
    ),
    "super_res_first": lambda: _superres(
      src, tmp, out, "super_res_first", low_res, variant, allow_unused
    ),
    "super_res_last": lambda: _superres(
      src, tmp, out, "super_res_last", low_res, variant, allow_unused
    ),
    "text_encoder": lambda: convert_transformers_clip(
      src / "text_encoder",
      tmp / "clip",
      tokenizer=src / "tokenizer" if (src / "tokenizer").is_dir() else None,
      allow_unused=allow_unused,
    ),
  }
  summary: dict[str, str] = {}
  with atomic_folder(out, overwrite=overwrite) as tmp:
    for name, convert in parts.items():
      if not (src / name).is_dir():
        logging.info("unclip: %s has no %s/; skipped", src, name)
        summary[name] = "skipped (absent)"
        continue
      try:
        result = convert()
      except Exception as e:  # name the subfolder, keep the converter's message
        raise ValueError(f"unclip: cannot convert {name}/ of {src}: {type(e).__name__}: {e}") from e
      summary.update(result if isinstance(result, dict) else {name: "converted"})
      logging.info("unclip: converted %s/", name)
    if all(v.startswith("skipped") for v in summary.values()):
      raise ValueError(f"{src} holds none of {list(parts)}: nothing to convert")
    schedulers = sorted(p for p in src.glob("*scheduler*/scheduler_config.json"))
    for file in schedulers:
      (tmp / "schedulers").mkdir(exist_ok=True)
      shutil.copy(file, tmp / "schedulers" / f"{file.parent.name}.json")
    summary["schedulers"] = [f.parent.name for f in schedulers]
    (tmp / SUMMARY_FILE).write_text(
      json.dumps({"source": str(src), "components": summary}, indent=2) + "\n"
    )
  return out
