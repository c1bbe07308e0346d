"""Tiny random diffusers U-Nets (built locally, nothing downloaded) and forward helpers."""

import numpy as np
import pytest

# diffusers' config dicts for the tiny models the parity tests build, by name. Each
# mirrors a family of public checkpoints at 32/64 channels and 16x16 samples.
TINY_CONFIGS = {
  # DDPM-era pixel model (google/ddpm-*): conv resampling, additive time embedding,
  # sin-first embedding with freq_shift=1, one head per block, class ids.
  "ddpm": (
    "UNet2DModel",
    dict(
      sample_size=16,
      in_channels=3,
      out_channels=3,
      block_out_channels=(32, 64),
      layers_per_block=2,
      down_block_types=("DownBlock2D", "AttnDownBlock2D"),
      up_block_types=("AttnUpBlock2D", "UpBlock2D"),
      attention_head_dim=None,
      norm_num_groups=8,
      flip_sin_to_cos=False,
      freq_shift=1,
      num_class_embeds=10,
    ),
  ),
  # ADM / consistency-model style: ResNet resampling, scale-shift, learned variance.
  "adm": (
    "UNet2DModel",
    dict(
      sample_size=16,
      in_channels=3,
      out_channels=6,
      block_out_channels=(32, 32, 64),
      layers_per_block=1,
      down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
      up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"),
      downsample_type="resnet",
      upsample_type="resnet",
      attention_head_dim=16,
      norm_num_groups=8,
      attn_norm_num_groups=8,
      resnet_time_scale_shift="scale_shift",
    ),
  ),
  # Karlo / unCLIP decoder: SimpleCrossAttn blocks, identity class embedding (the CLIP
  # time embedding is added), scale-shift, 6 output channels (eps + variance).
  "karlo": (
    "UNet2DConditionModel",
    dict(
      sample_size=16,
      in_channels=3,
      out_channels=6,
      block_out_channels=(32, 64, 64),
      layers_per_block=1,
      down_block_types=(
        "ResnetDownsampleBlock2D",
        "SimpleCrossAttnDownBlock2D",
        "SimpleCrossAttnDownBlock2D",
      ),
      mid_block_type="UNetMidBlock2DSimpleCrossAttn",
      up_block_types=(
        "SimpleCrossAttnUpBlock2D",
        "SimpleCrossAttnUpBlock2D",
        "ResnetUpsampleBlock2D",
      ),
      cross_attention_dim=48,
      attention_head_dim=16,
      norm_num_groups=8,
      resnet_time_scale_shift="scale_shift",
      class_embed_type="identity",
    ),
  ),
  # Projected class vector plus DeepFloyd-IF's ResNet options.
  "projection_if": (
    "UNet2DConditionModel",
    dict(
      sample_size=16,
      in_channels=3,
      out_channels=3,
      block_out_channels=(32, 64),
      layers_per_block=2,
      down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
      mid_block_type="UNetMidBlock2DSimpleCrossAttn",
      up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
      cross_attention_dim=24,
      attention_head_dim=32,
      norm_num_groups=8,
      resnet_time_scale_shift="scale_shift",
      class_embed_type="projection",
      projection_class_embeddings_input_dim=12,
      resnet_skip_time_act=True,
      resnet_out_scale_factor=1.414,
      mid_block_scale_factor=1.414,
    ),
  ),
}


def build_torch_unet(name: str, seed: int = 0):
  """A diffusers U-Net of `TINY_CONFIGS[name]` with random weights (biases and norms too)."""
  torch = pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  cls_name, kwargs = TINY_CONFIGS[name]
  torch.manual_seed(seed)
  model = getattr(diffusers, cls_name)(**kwargs).eval()
  with torch.no_grad():  # zero biases / unit norms would hide transposition mistakes
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


def unet_inputs(name: str, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
  """Inputs for a tiny model: NCHW sample, timesteps, and its conditions."""
  cls_name, kw = TINY_CONFIGS[name]
  rng = np.random.RandomState(seed)
  out = {
    "x": rng.randn(batch, kw["in_channels"], 16, 16).astype(np.float32),
    "t": np.array([7, 901][:batch]),
  }
  temb = 4 * kw["block_out_channels"][0]
  if kw.get("num_class_embeds"):
    out["class_labels"] = np.array([3, 9][:batch])
  elif kw.get("class_embed_type") == "identity":
    out["class_labels"] = rng.randn(batch, temb).astype(np.float32)
  elif kw.get("class_embed_type") == "projection":
    out["class_labels"] = rng.randn(batch, kw["projection_class_embeddings_input_dim"]).astype(
      np.float32
    )
  if kw.get("cross_attention_dim") and cls_name == "UNet2DConditionModel":
    out["context"] = rng.randn(batch, 5, kw["cross_attention_dim"]).astype(np.float32)
  return out


def torch_forward(model, inputs) -> np.ndarray:
  """The diffusers forward as (B, H, W, C) numpy."""
  import torch

  kw = {}
  if "class_labels" in inputs:
    kw["class_labels"] = torch.from_numpy(inputs["class_labels"])
  if "context" in inputs:
    kw["encoder_hidden_states"] = torch.from_numpy(inputs["context"])
  elif type(model).__name__ == "UNet2DConditionModel":
    kw["encoder_hidden_states"] = None
  with torch.no_grad():
    out = model(torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["t"]), **kw).sample
  return out.numpy().transpose(0, 2, 3, 1)


def jax_forward(unet, inputs) -> np.ndarray:
  import jax.numpy as jnp

  kw = {}
  if "class_labels" in inputs:
    kw["class_labels"] = jnp.asarray(inputs["class_labels"])
  if "context" in inputs:
    kw["context"] = jnp.asarray(inputs["context"])
  return np.asarray(
    unet(jnp.asarray(inputs["x"].transpose(0, 2, 3, 1)), jnp.asarray(inputs["t"]), **kw)
  )
