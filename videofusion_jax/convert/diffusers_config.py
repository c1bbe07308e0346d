"""diffusers' `config.json` of a U-Net -> our `UNetConfig`, refusing what we cannot build.

Two classes are read, `UNet2DModel` (DDPM/ADM-style pixel models) and
`UNet2DConditionModel` in its unCLIP-decoder form (Karlo, DeepFloyd-IF-like blocks). The
tables below say, per diffusers block type, what each block builds (attention, cross
attention, ResNet or convolution resampling, whether it honours the IF ResNet options),
and which other config fields must keep their default value. Everything else is a
straight copy. Fields missing from a config.json take the class's default, as diffusers
does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from videofusion_jax.models.unet import UNetConfig

SUPPORTED_CLASSES = ("UNet2DModel", "UNet2DConditionModel")


@dataclasses.dataclass(frozen=True)
class BlockKind:
  attention: bool  # spatial self-attention after each ResNet
  cross: bool  # the attention also takes condition tokens (add_k/v_proj)
  resampler: str  # "conv", "resnet" or "option" (the class's down/upsample_type)
  resnet_options: bool  # passes resnet_skip_time_act / resnet_out_scale_factor on


DOWN_BLOCKS = {
  "DownBlock2D": BlockKind(False, False, "conv", False),
  "AttnDownBlock2D": BlockKind(True, False, "option", False),
  "ResnetDownsampleBlock2D": BlockKind(False, False, "resnet", True),
  "SimpleCrossAttnDownBlock2D": BlockKind(True, True, "resnet", True),
}
UP_BLOCKS = {
  "UpBlock2D": BlockKind(False, False, "conv", False),
  "AttnUpBlock2D": BlockKind(True, False, "option", False),
  "ResnetUpsampleBlock2D": BlockKind(False, False, "resnet", True),
  "SimpleCrossAttnUpBlock2D": BlockKind(True, True, "resnet", True),
}
MID_BLOCKS = {  # (class, mid type) -> kind; UNet2DConditionModel's UNetMidBlock2D has 1 ResNet
  ("UNet2DModel", "UNetMidBlock2D"): BlockKind(True, False, "conv", False),
  ("UNet2DConditionModel", "UNetMidBlock2DSimpleCrossAttn"): BlockKind(True, True, "conv", True),
}

# Class defaults of the fields read here (diffusers >= 0.20), used when config.json omits one.
DEFAULTS = {
  "UNet2DModel": dict(
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    time_embedding_dim=None,
    freq_shift=0,
    flip_sin_to_cos=True,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    mid_block_type="UNetMidBlock2D",
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(224, 448, 672, 896),
    layers_per_block=2,
    mid_block_scale_factor=1,
    downsample_padding=1,
    downsample_type="conv",
    upsample_type="conv",
    dropout=0.0,
    act_fn="silu",
    attention_head_dim=8,
    norm_num_groups=32,
    attn_norm_num_groups=None,
    norm_eps=1e-5,
    resnet_time_scale_shift="default",
    add_attention=True,
    class_embed_type=None,
    num_class_embeds=None,
  ),
  "UNet2DConditionModel": dict(
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=(
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
      "DownBlock2D",
    ),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    dropout=0.0,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1280,
    encoder_hid_dim=None,
    encoder_hid_dim_type=None,
    attention_head_dim=8,
    dual_cross_attention=False,
    class_embed_type=None,
    addition_embed_type=None,
    num_class_embeds=None,
    resnet_time_scale_shift="default",
    resnet_skip_time_act=False,
    resnet_out_scale_factor=1.0,
    time_embedding_type="positional",
    time_embedding_dim=None,
    time_embedding_act_fn=None,
    timestep_post_act=None,
    time_cond_proj_dim=None,
    conv_in_kernel=3,
    conv_out_kernel=3,
    projection_class_embeddings_input_dim=None,
    attention_type="default",
    class_embeddings_concat=False,
    mid_block_only_cross_attention=None,
    cross_attention_norm=None,
  ),
}

# Fields that must keep these values: our U-Net has no counterpart for the others.
FIXED = {
  "act_fn": ("silu",),
  "center_input_sample": (False,),
  "time_embedding_type": ("positional",),
  "downsample_padding": (1,),
  "dual_cross_attention": (False,),
  "only_cross_attention": (False,),
  "mid_block_only_cross_attention": (None, False),
  "addition_embed_type": (None,),
  "encoder_hid_dim": (None,),
  "encoder_hid_dim_type": (None,),
  "time_embedding_act_fn": (None,),
  "timestep_post_act": (None,),
  "time_cond_proj_dim": (None,),
  "conv_in_kernel": (3,),
  "conv_out_kernel": (3,),
  "class_embeddings_concat": (False,),
  "cross_attention_norm": (None,),
  "attention_type": ("default",),
  "resnet_time_scale_shift": ("default", "scale_shift"),
  "downsample_type": ("conv", "resnet"),
  "upsample_type": ("conv", "resnet"),
}
CLASS_EMBED_TYPES = {  # diffusers class_embed_type -> ours (None + num_class_embeds: ids)
  None: None,
  "identity": "identity",
  "projection": "projection",
}


def _single(name: str, value, what: str):
  """An int-or-per-block-tuple field that our U-Net holds once: all entries must agree."""
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise ValueError(
        f"diffusers config {name}={list(value)}: our U-Net uses one {what} for every block"
      )
    return value[0]
  return value


def _resampler(kind: BlockKind, option: str) -> str:
  return option if kind.resampler == "option" else kind.resampler


def unet_config_from_diffusers(config: Mapping[str, Any]) -> UNetConfig:
  """A diffusers U-Net `config.json` (as a dict) -> the matching `UNetConfig`."""
  cls = config.get("_class_name")
  if cls not in SUPPORTED_CLASSES:
    raise ValueError(f"config.json _class_name={cls!r}; supported: {SUPPORTED_CLASSES}")
  c = dict(DEFAULTS[cls])
  c.update({k: v for k, v in config.items() if not k.startswith("_")})
  for name, allowed in FIXED.items():
    if name in c and c[name] not in allowed:
      raise ValueError(
        f"diffusers config {name}={c[name]!r} is not supported; expected one of {allowed}"
      )

  chans = tuple(c["block_out_channels"])
  down, up = list(c["down_block_types"]), list(c["up_block_types"])
  if not len(down) == len(up) == len(chans):
    raise ValueError(
      f"diffusers config has {len(down)} down_block_types, {len(up)} "
      f"up_block_types and {len(chans)} block_out_channels; expected equal"
    )
  for field, table, types in (
    ("down_block_types", DOWN_BLOCKS, down),
    ("up_block_types", UP_BLOCKS, up),
  ):
    for t in types:
      if t not in table:
        raise ValueError(f"diffusers {field} contains {t!r}; supported: {sorted(table)}")
  mid_key = (cls, c["mid_block_type"])
  if mid_key not in MID_BLOCKS:
    supported = [m for k, m in MID_BLOCKS if k == cls]
    raise ValueError(
      f"diffusers mid_block_type={c['mid_block_type']!r} is not supported "
      f"for {cls}; supported: {supported}"
    )
  mid = MID_BLOCKS[mid_key]
  down_kinds = [DOWN_BLOCKS[t] for t in down]
  up_kinds = [UP_BLOCKS[t] for t in reversed(up)]  # reversed: index = resolution level
  levels = len(chans)

  # Attention: the same levels on both paths, all with or all without condition tokens.
  attention_levels = tuple(i for i, k in enumerate(down_kinds) if k.attention)
  up_levels = tuple(i for i, k in enumerate(up_kinds) if k.attention)
  if attention_levels != up_levels:
    raise ValueError(
      f"diffusers down_block_types {down} and up_block_types {up} put "
      "attention at different resolutions; our U-Net mirrors them"
    )
  mid_attention = mid.attention and c.get("add_attention", True)
  attn_kinds = [k for k in down_kinds + up_kinds if k.attention]
  attn_kinds += [mid] if mid_attention else []
  if len({k.cross for k in attn_kinds}) > 1:
    raise ValueError(
      f"diffusers blocks {down}, {c['mid_block_type']!r}, {up} mix "
      "attention with and without condition tokens; our U-Net does not"
    )
  cross = bool(attn_kinds) and attn_kinds[0].cross
  cross_dim = (
    _single("cross_attention_dim", c.get("cross_attention_dim"), "cross_attention_dim")
    if cross
    else None
  )

  # Resampling: stride-2 convs / nearest+conv everywhere, or ResNet blocks everywhere.
  resamplers = {
    _resampler(down_kinds[i], c.get("downsample_type", "conv")) for i in range(levels - 1)
  }
  resamplers |= {_resampler(up_kinds[i], c.get("upsample_type", "conv")) for i in range(1, levels)}
  if len(resamplers) > 1:
    raise ValueError(
      f"diffusers blocks {down} / {up} mix convolution and ResNet "
      "resampling; our U-Net uses one kind (resnet_updown)"
    )

  # Heads: diffusers' attention_head_dim is channels per head in all blocks read here.
  head = _single("attention_head_dim", c.get("attention_head_dim"), "attention_head_dim")
  head_dims = {chans[i] if head is None else head for i in attention_levels}
  if mid_attention:
    head_dims.add(chans[-1] if head is None else head)
  if len(head_dims) > 1:
    raise ValueError(
      f"diffusers attention_head_dim={head} gives head sizes "
      f"{sorted(head_dims)} across blocks; our U-Net uses one head size"
    )
  head_dim = head_dims.pop() if head_dims else (64 if head is None else head)
  for i in attention_levels + ((levels - 1,) if mid_attention else ()):
    if chans[i] % head_dim:
      raise ValueError(
        f"diffusers block_out_channels[{i}]={chans[i]} is not a multiple "
        f"of attention_head_dim={head_dim}"
      )

  groups = c["norm_num_groups"]
  if groups is None:
    raise ValueError("diffusers config norm_num_groups=None is not supported")
  if cls == "UNet2DModel" and mid_attention:
    attn_groups = c.get("attn_norm_num_groups")
    if attn_groups is None and c["resnet_time_scale_shift"] != "default":
      raise ValueError(
        "UNet2DModel with resnet_time_scale_shift="
        f"{c['resnet_time_scale_shift']!r} and attn_norm_num_groups=None has "
        "no GroupNorm in its mid-block attention; ours always has one"
      )
    if attn_groups not in (None, groups):
      raise ValueError(
        f"diffusers attn_norm_num_groups={attn_groups} differs from "
        f"norm_num_groups={groups}; our U-Net uses one group count"
      )

  # DeepFloyd-IF ResNet options reach only some block types.
  skip_act = bool(c.get("resnet_skip_time_act", False))
  out_scale = float(c.get("resnet_out_scale_factor", 1.0))
  if skip_act or out_scale != 1.0:
    ignoring = sorted(
      {t for t, k in zip(down + up, down_kinds + up_kinds[::-1]) if not k.resnet_options}
    )
    if ignoring or not mid.resnet_options:
      raise ValueError(
        f"diffusers resnet_skip_time_act={skip_act} / resnet_out_scale_factor="
        f"{out_scale} are not applied by {ignoring or [c['mid_block_type']]}; "
        "our U-Net applies them to every ResNet"
      )
  if float(c["mid_block_scale_factor"]) != out_scale:
    raise ValueError(
      f"diffusers mid_block_scale_factor={c['mid_block_scale_factor']} differs "
      f"from the other ResNets' output scale {out_scale}; not supported"
    )

  time_dim = c.get("time_embedding_dim")
  if time_dim not in (None, 4 * chans[0]):
    raise ValueError(
      f"diffusers time_embedding_dim={time_dim}; our U-Net uses "
      f"4 * block_out_channels[0] = {4 * chans[0]}"
    )

  cet = c.get("class_embed_type")
  if cet not in CLASS_EMBED_TYPES or (cls == "UNet2DModel" and cet == "projection"):
    raise ValueError(
      f"diffusers class_embed_type={cet!r} is not supported; expected one of "
      f"{list(CLASS_EMBED_TYPES)}"
    )
  class_embed_type = CLASS_EMBED_TYPES[cet]
  num_class_embeds = c.get("num_class_embeds")
  if cet is None and num_class_embeds is not None:
    class_embed_type = "embedding"
  class_input = (
    c.get("projection_class_embeddings_input_dim") if class_embed_type == "projection" else None
  )

  return UNetConfig(
    in_channels=int(c["in_channels"]),
    out_channels=int(c["out_channels"]),
    block_out_channels=chans,
    layers_per_block=int(_single("layers_per_block", c["layers_per_block"], "layers_per_block")),
    attention_levels=attention_levels,
    mid_block_attention=bool(mid_attention),
    attention_head_dim=int(head_dim),
    norm_num_groups=int(groups),
    norm_eps=float(c["norm_eps"]),
    dropout=float(c.get("dropout", 0.0)),
    resnet_time_scale_shift=c["resnet_time_scale_shift"],
    resnet_updown=resamplers == {"resnet"},
    resnet_out_scale_factor=out_scale,
    resnet_skip_time_act=skip_act,
    flip_sin_to_cos=bool(c["flip_sin_to_cos"]),
    freq_shift=float(c["freq_shift"]),
    class_embed_type=class_embed_type,
    num_class_embeds=num_class_embeds if class_embed_type == "embedding" else None,
    class_embed_input_dim=class_input,
    cross_attention_dim=None if cross_dim is None else int(cross_dim),
  )
