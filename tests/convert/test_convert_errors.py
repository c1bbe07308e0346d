"""Conversion inputs: weight files, config translation, CLI, and the errors for bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.convert.tiny_unets import TINY_CONFIGS, jax_forward, torch_forward, unet_inputs
from videofusion_jax.convert import (
  convert_diffusers_unet,
  convert_state_dict,
  convert_unet,
  load_unet,
  unet_config_from_diffusers,
)
from videofusion_jax.convert.diffusers_unet import LIST_LIMIT, abstract_unet, read_diffusers_unet
from videofusion_jax.convert.weights import read_safetensors, read_weights

REPO = Path(__file__).resolve().parents[2]


def _karlo_config():
  cls, kw = TINY_CONFIGS["karlo"]
  return dict(kw, _class_name=cls)


def _copy_model(saved_unets, tmp_path, name="karlo"):
  src, model = saved_unets(name)
  dst = tmp_path / "model"
  shutil.copytree(src, dst)
  return dst, model


# --- config translation -----------------------------------------------------------------


def test_karlo_config_translates_to_our_fields():
  c = unet_config_from_diffusers(_karlo_config())
  assert (c.in_channels, c.out_channels) == (3, 6)
  assert c.attention_levels == (1, 2) and c.mid_block_attention
  assert c.resnet_updown and c.resnet_time_scale_shift == "scale_shift"
  assert c.cross_attention_dim == 48 and c.attention_head_dim == 16
  assert c.class_embed_type == "identity" and c.norm_eps == 1e-5


def test_omitted_fields_take_the_diffusers_class_defaults():
  c = unet_config_from_diffusers(
    {
      "_class_name": "UNet2DModel",
      "block_out_channels": [64, 64],
      "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
      "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    }
  )
  assert (c.layers_per_block, c.attention_head_dim, c.resnet_time_scale_shift) == (2, 8, "default")
  assert c.flip_sin_to_cos and c.freq_shift == 0 and c.class_embed_type is None


@pytest.mark.parametrize(
  "change,match",
  [
    (
      {
        "down_block_types": [
          "ResnetDownsampleBlock2D",
          "CrossAttnDownBlock2D",
          "SimpleCrossAttnDownBlock2D",
        ]
      },
      r"down_block_types contains 'CrossAttnDownBlock2D'; supported: \['AttnDownBlock2D', "
      r"'DownBlock2D', 'ResnetDownsampleBlock2D', 'SimpleCrossAttnDownBlock2D'\]",
    ),
    (
      {"mid_block_type": "UNetMidBlock2DCrossAttn"},
      r"mid_block_type='UNetMidBlock2DCrossAttn' is not supported for UNet2DConditionModel; "
      r"supported: \['UNetMidBlock2DSimpleCrossAttn'\]",
    ),
    ({"_class_name": "UNet3DConditionModel"}, r"_class_name='UNet3DConditionModel'"),
    ({"addition_embed_type": "text"}, r"addition_embed_type='text' is not supported"),
    ({"class_embed_type": "timestep"}, r"class_embed_type='timestep' is not supported"),
    ({"attention_head_dim": [16, 16, 32]}, r"attention_head_dim=\[16, 16, 32\]"),
    (
      {
        "resnet_skip_time_act": True,  # the last blocks do not resample: no mixing
        "down_block_types": [
          "ResnetDownsampleBlock2D",
          "SimpleCrossAttnDownBlock2D",
          "DownBlock2D",
        ],
        "up_block_types": ["ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D", "UpBlock2D"],
      },
      r"resnet_skip_time_act=True / resnet_out_scale_factor=1.0 are not applied by "
      r"\['DownBlock2D', 'UpBlock2D'\]",
    ),
    (
      {
        "down_block_types": [
          "DownBlock2D",
          "SimpleCrossAttnDownBlock2D",
          "SimpleCrossAttnDownBlock2D",
        ]
      },
      r"mix convolution and ResNet",
    ),
    (
      {
        "up_block_types": [
          "SimpleCrossAttnUpBlock2D",
          "ResnetUpsampleBlock2D",
          "ResnetUpsampleBlock2D",
        ]
      },
      r"attention at different resolutions",
    ),
  ],
)
def test_unsupported_architectures_fail_naming_field_and_value(change, match):
  with pytest.raises(ValueError, match=match):
    unet_config_from_diffusers(dict(_karlo_config(), **change))


# --- state dict checks ------------------------------------------------------------------


def _state_dict(model):
  return {k: v.numpy() for k, v in model.state_dict().items()}


def test_unused_missing_and_misshapen_keys_fail_naming_them(saved_unets):
  _, model = saved_unets("karlo")
  # One abstract model for the four conversions (convert_unet builds it each time).
  config = abstract_unet(unet_config_from_diffusers(_karlo_config()))
  sd = _state_dict(model)

  extra = dict(sd, **{"mid_block.attentions.0.rotary.weight": np.zeros(3, np.float32)})
  with pytest.raises(
    ValueError,
    match=r"unused torch keys \['mid_block\.attentions\.0\."
    r"rotary\.weight'\]",
  ):
    convert_state_dict(extra, config)
  convert_state_dict(extra, config, allow_unused=[r".*\.rotary\.weight"])  # named as expected

  missing = {k: v for k, v in sd.items() if k != "up_blocks.0.attentions.0.add_k_proj.bias"}
  with pytest.raises(
    ValueError,
    match=r"missing torch keys \['up_blocks\.0\.attentions\.0\."
    r"add_k_proj\.bias'\]",
  ):
    convert_state_dict(missing, config)

  bad = dict(sd, **{"conv_in.weight": np.zeros((32, 4, 3, 3), np.float32)})
  with pytest.raises(
    ValueError,
    match=r"torch key 'conv_in\.weight' has shape \(32, 4, 3, 3\)"
    r".*expected \(3, 3, 3, 32\)",
  ):
    convert_state_dict(bad, config)


# Wrong-shaped weights of each transform: conv kernels (one not even 4-D), a Linear
# weight and a norm scale.
MISSHAPEN = {
  "conv_in.weight": (32, 4, 3, 3),
  "time_embedding.linear_1.weight": (7, 32),
  "conv_norm_out.weight": (5,),
  "conv_out.weight": (6,),
}
MISSHAPEN_LINES = {
  "  torch key 'conv_in.weight' has shape (32, 4, 3, 3), which gives (3, 3, 4, 32) for "
  "conv_in.kernel; expected (3, 3, 3, 32)",
  "  torch key 'time_embedding.linear_1.weight' has shape (7, 32), which gives (32, 7) for "
  "time_embedding.linear_1.kernel; expected (32, 128)",
  "  torch key 'conv_norm_out.weight' has shape (5,), which gives (5,) for "
  "conv_norm_out.scale; expected (32,)",
  "  torch key 'conv_out.weight' has shape (6,), which the 'conv' transform cannot turn "
  "into conv_out.kernel; expected (3, 3, 32, 6)",
}


def _misshapen(sd):
  return dict(sd, **{k: np.zeros(shape, np.float32) for k, shape in MISSHAPEN.items()})


def test_every_misshapen_and_missing_key_is_named_in_one_error(saved_unets):
  _, model = saved_unets("karlo")
  sd = _misshapen(_state_dict(model))
  del sd["up_blocks.0.attentions.0.add_k_proj.bias"]
  with pytest.raises(ValueError) as info:
    convert_unet(sd, unet_config_from_diffusers(_karlo_config()))
  msg = str(info.value)
  assert msg.startswith(
    "state dict does not match the model: missing torch keys "
    "['up_blocks.0.attentions.0.add_k_proj.bias']; 4 torch keys of the "
    "wrong shape:\n"
  ), msg
  assert set(msg.splitlines()[1:]) == MISSHAPEN_LINES, msg


def test_a_wholly_wrong_checkpoint_lists_the_first_keys_and_counts_the_rest(saved_unets):
  _, model = saved_unets("karlo")
  sd = {k: v[..., None] for k, v in _state_dict(model).items()}  # every tensor one rank up
  with pytest.raises(ValueError) as info:
    convert_unet(sd, unet_config_from_diffusers(_karlo_config()))
  lines = str(info.value).splitlines()
  assert (
    lines[0] == f"state dict does not match the model: {len(sd)} torch keys of the wrong shape:"
  )
  assert len(lines) == 1 + LIST_LIMIT + 1 and lines[-1] == f"  and {len(sd) - LIST_LIMIT} more"


def test_legacy_attention_key_names_are_read(saved_unets):
  # DDPM-era checkpoints name attention layers query/key/value/proj_attn.
  _, model = saved_unets("ddpm")
  config = unet_config_from_diffusers(dict(TINY_CONFIGS["ddpm"][1], _class_name="UNet2DModel"))
  sd = _state_dict(model)
  legacy = {
    k.replace(".to_q.", ".query.")
    .replace(".to_k.", ".key.")
    .replace(".to_v.", ".value.")
    .replace(".to_out.0.", ".proj_attn."): v
    for k, v in sd.items()
  }
  assert legacy != sd
  new, old = convert_unet(sd, config), convert_unet(legacy, config)
  np.testing.assert_array_equal(
    new["mid_block"]["attentions"][0]["to_out"]["kernel"],
    old["mid_block"]["attentions"][0]["to_out"]["kernel"],
  )


# --- weight files -----------------------------------------------------------------------


def test_safetensors_reader_matches_the_safetensors_package_and_reads_bf16(tmp_path):
  torch = pytest.importorskip("torch")
  st_torch = pytest.importorskip("safetensors.torch")
  tensors = {
    "a": torch.randn(3, 4),
    "h": torch.randn(5).half(),
    "b": torch.randn(2, 3).bfloat16(),
    "i": torch.arange(4),
  }
  st_torch.save_file(tensors, tmp_path / "w.safetensors")
  got = read_safetensors(tmp_path / "w.safetensors")
  for name, t in tensors.items():
    want = t.float().numpy() if t.is_floating_point() else t.numpy()
    np.testing.assert_array_equal(got[name], want)
    assert got[name].dtype == want.dtype


def test_truncated_safetensors_fails_and_leaves_no_output(saved_unets, tmp_path):
  src, _ = _copy_model(saved_unets, tmp_path)
  weights = src / "diffusion_pytorch_model.safetensors"
  weights.write_bytes(weights.read_bytes()[:-1000])
  with pytest.raises(ValueError, match=r"is truncated: tensor '.*' needs bytes"):
    convert_diffusers_unet(src, tmp_path / "out")
  assert not (tmp_path / "out").exists()
  assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no partial folder either


def test_not_a_model_folder_and_missing_weights_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
    convert_diffusers_unet(tmp_path, tmp_path / "out")
  (tmp_path / "config.json").write_text(json.dumps(_karlo_config()))
  with pytest.raises(
    FileNotFoundError,
    match=rf"no weights in {tmp_path}: expected one of "
    r"\['diffusion_pytorch_model\.safetensors'",
  ):
    convert_diffusers_unet(tmp_path, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_existing_output_is_not_overwritten_unless_asked(saved_unets, tmp_path):
  src, _ = saved_unets("ddpm")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("x")
  with pytest.raises(FileExistsError, match="is not empty"):
    convert_diffusers_unet(src, tmp_path / "out")
  assert (tmp_path / "out" / "keep.txt").exists()
  convert_diffusers_unet(src, tmp_path / "out", overwrite=True)
  assert not (tmp_path / "out" / "keep.txt").exists()
  assert (tmp_path / "out" / "config_snippet.py").exists()


def test_bin_weights_read_through_torch_equal_safetensors(saved_unets, tmp_path):
  pytest.importorskip("torch")
  _, model = saved_unets("adm")
  model.save_pretrained(tmp_path / "bin", safe_serialization=False)
  assert (tmp_path / "bin" / "diffusion_pytorch_model.bin").exists()
  _, from_bin, _ = read_diffusers_unet(tmp_path / "bin")
  src, _ = saved_unets("adm")
  _, from_st, _ = read_diffusers_unet(src)
  np.testing.assert_array_equal(from_bin["conv_in"]["kernel"], from_st["conv_in"]["kernel"])


def test_bin_without_torch_says_which_extra_to_install(tmp_path, monkeypatch):
  (tmp_path / "w.bin").write_bytes(b"\x80\x02}q\x00.")
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
  with pytest.raises(
    ImportError,
    match=r"w\.bin \(a PyTorch pickle\) needs PyTorch: pip "
    r"install 'videofusion_jax\[convert\]'",
  ):
    read_weights(tmp_path / "w.bin")


# --- the command line -------------------------------------------------------------------


@pytest.mark.slow  # a CLI subprocess; conversion itself is tested in-process
def test_cli_converts_a_folder_and_the_snippet_configures_model_base(saved_unets, tmp_path):
  src, model = saved_unets("karlo")
  out = tmp_path / "karlo_jax"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.convert",
      "diffusers-unet",
      f"--src={src}",
      f"--out={out}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert f"wrote {out}" in run.stdout
  inputs = unet_inputs("karlo")
  np.testing.assert_allclose(
    jax_forward(load_unet(out), inputs), torch_forward(model, inputs), rtol=1e-4, atol=1e-5
  )

  from configs import base  # the snippet sets model.base to the converted U-Net

  namespace = {}
  exec((out / "config_snippet.py").read_text(), namespace)  # pylint: disable=exec-used
  config = base.get_config()
  namespace["apply"](config)
  assert tuple(config.model.base.block_out_channels) == (32, 64, 64)
  assert config.model.learned_variance and config.train.init_base_from == str(out)

  bad = subprocess.run(
    [sys.executable, "-m", "videofusion_jax.convert", "onnx", f"--src={src}", f"--out={out}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode != 0 and "one of ('diffusers-unet'," in bad.stderr

  # A checkpoint with several wrong-shaped weights: one error lists them all.
  st_numpy = pytest.importorskip("safetensors.numpy")
  wrong, _ = _copy_model(saved_unets, tmp_path)
  weights = wrong / "diffusion_pytorch_model.safetensors"
  st_numpy.save_file(_misshapen(read_safetensors(weights)), weights)
  bad = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.convert",
      "diffusers-unet",
      f"--src={wrong}",
      f"--out={tmp_path / 'wrong_jax'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode != 0 and not (tmp_path / "wrong_jax").exists()
  assert bad.stderr.count("torch keys of the wrong shape") == 1, bad.stderr[-4000:]
  assert (
    "ValueError: state dict does not match the model: 4 torch keys of the wrong "
    "shape:" in bad.stderr
  ), bad.stderr[-4000:]
  assert MISSHAPEN_LINES <= set(bad.stderr.splitlines()), bad.stderr[-4000:]
