"""`python -m videofusion_jax.convert clip`: transformers folders -> orbax -> load_clip.

Tiny random CLIPs are saved with `save_pretrained` (safetensors, or .bin pickles) and
converted; the loaded towers must give the torch outputs, and bad folders must fail
naming the file or key, leaving no partial output.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from tests.models.tiny_clip import text_config_kwargs, train_bpe, vision_config_kwargs, write_vocab
from videofusion_jax.convert.clip_checkpoint import load_clip
from videofusion_jax.convert.transformers_clip import convert_transformers_clip
from videofusion_jax.convert.weights import read_safetensors

torch = pytest.importorskip("torch", reason="needs the [convert] extra (torch)")
transformers = pytest.importorskip(
  "transformers", reason="needs the [convert] extra (transformers)"
)
safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOL = 1e-4
REPO = Path(__file__).resolve().parents[2]


def _close(got, want):
  np.testing.assert_allclose(
    np.asarray(got), np.asarray(want), rtol=TOL, atol=TOL * max(1.0, np.abs(want).max())
  )


@pytest.fixture(scope="module")
def full_clip(tmp_path_factory):
  """A tiny CLIPModel saved as safetensors with its tokenizer files next to it."""
  torch.manual_seed(0)
  config = transformers.CLIPConfig(
    text_config=text_config_kwargs(), vision_config=vision_config_kwargs(), projection_dim=20
  )
  model = transformers.CLIPModel(config).eval()
  src = tmp_path_factory.mktemp("hf") / "clip"
  model.save_pretrained(src)
  write_vocab(src, *train_bpe(num_merges=100))
  return src, model


def _inputs():
  ids = np.random.default_rng(0).integers(3, 40, (2, 16))
  ids[:, 0], ids[0, 6:], ids[1, 15] = 48, 49, 49
  pixels = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)
  return ids, pixels


def test_full_clip_round_trip(full_clip, tmp_path):
  src, model = full_clip
  out = convert_transformers_clip(src, tmp_path / "out")
  assert sorted(p.name for p in out.iterdir()) == [
    "clip_config.json",
    "merges.txt",
    "params",
    "vocab.json",
  ]
  clip = load_clip(out)
  ids, pixels = _inputs()
  with torch.no_grad():
    text = model.get_text_features(input_ids=torch.from_numpy(ids))
    image = model.get_image_features(
      pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())
    )
  hidden, text_embeds = clip.text(jnp.asarray(ids))
  _close(hidden, text.last_hidden_state.numpy())
  _close(text_embeds, text.pooler_output.numpy())
  vhidden, image_embeds = clip.vision(jnp.asarray(pixels))
  _close(vhidden, image.last_hidden_state.numpy())
  _close(image_embeds, image.pooler_output.numpy())
  # The copied tokenizer gives transformers' ids.
  hf = transformers.CLIPTokenizer.from_pretrained(str(src))
  assert clip.tokenizer.context_length == 16
  np.testing.assert_array_equal(
    clip.tokenizer(["a cat on the mat", ""]),
    hf(["a cat on the mat", ""], padding="max_length", max_length=16)["input_ids"],
  )


def test_cli_with_projection_bin_and_bf16(tmp_path):
  """CLI; a CLIPTextModelWithProjection as .bin with a legacy position_ids buffer, its
  tokenizer in a diffusers-style sibling folder; a bf16 vision model as safetensors."""
  torch.manual_seed(1)
  text = transformers.CLIPTextModelWithProjection(
    transformers.CLIPTextConfig(**text_config_kwargs(eos_token_id=2))
  ).eval()
  src = tmp_path / "pipe" / "text_encoder"
  text.save_pretrained(src)  # transformers 5 writes safetensors only: swap in
  (src / "model.safetensors").unlink()  # a pickle, with the buffer of pre-4.31 files
  sd = dict(text.state_dict(), **{"text_model.embeddings.position_ids": torch.arange(16)[None]})
  torch.save(sd, src / "pytorch_model.bin")
  write_vocab(tmp_path / "pipe" / "tokenizer", *train_bpe(num_merges=50))
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.convert",
      "clip",
      f"--src={src}",
      f"--out={tmp_path / 'text_out'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert f"wrote {tmp_path / 'text_out'}" in run.stdout
  clip = load_clip(tmp_path / "text_out")
  assert clip.vision is None and clip.tokenizer is not None
  ids, pixels = _inputs()
  with torch.no_grad():
    want = text(torch.from_numpy(ids))
  _close(clip.text(jnp.asarray(ids))[1], want.text_embeds.numpy())
  with pytest.raises(ValueError, match="has no vision"):
    clip.require("vision")

  vision = transformers.CLIPVisionModelWithProjection(
    transformers.CLIPVisionConfig(**vision_config_kwargs())
  ).eval()
  vsrc = tmp_path / "image_encoder"
  vision.to(torch.bfloat16).save_pretrained(vsrc)
  assert {str(v.dtype) for v in read_safetensors(vsrc / "model.safetensors").values()} == {
    "float32"
  }
  clip = load_clip(convert_transformers_clip(vsrc, tmp_path / "vision_out"))
  assert clip.text is None and clip.tokenizer is None
  with torch.no_grad():
    want = vision.float()(torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()))
  _close(clip.vision(jnp.asarray(pixels))[1], want.image_embeds.numpy())
  with pytest.raises(ValueError, match="has no tokenizer; copy vocab.json"):
    clip.require("tokenizer")


def test_bad_folders_fail_with_names(full_clip, tmp_path):
  src, _ = full_clip
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    convert_transformers_clip(tmp_path / "nothing", tmp_path / "o1")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=str(empty / "config.json")):
    convert_transformers_clip(empty, tmp_path / "o2")
  (empty / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    convert_transformers_clip(empty, tmp_path / "o3")
  (empty / "config.json").write_text(json.dumps({"model_type": "vit"}))
  with pytest.raises(ValueError, match="model_type='vit'"):
    convert_transformers_clip(empty, tmp_path / "o4")

  # An extra key, a missing key, a wrong shape: each named; no output folder left.
  sd = read_safetensors(src / "model.safetensors")
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "config.json").write_text((src / "config.json").read_text())
  cases = [
    (
      {**sd, "text_model.extra.weight": np.zeros(3, np.float32)},
      "unused torch keys \\['text_model.extra.weight'\\]",
    ),
    (
      {k: v for k, v in sd.items() if k != "visual_projection.weight"},
      "missing torch keys \\['visual_projection.weight'\\]",
    ),
    (
      {**sd, "text_projection.weight": np.zeros((20, 31), np.float32)},
      "'text_projection.weight' has shape \\(20, 31\\)",
    ),
  ]
  for state, message in cases:
    safetensors_numpy.save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=message):
      convert_transformers_clip(bad, tmp_path / "out")
    assert not any(p.name.startswith(("out", ".out")) for p in tmp_path.iterdir())
  # --allow_unused names expected extras.
  safetensors_numpy.save_file(
    {
      **sd,
      "text_model.extra.weight": np.zeros(3, np.float32),
      "vision_model.bf": np.zeros(2, ml_dtypes.bfloat16),
    },
    str(bad / "model.safetensors"),
  )
  convert_transformers_clip(bad, tmp_path / "out", allow_unused=[r".*extra.*", r".*\.bf"])
  with pytest.raises(FileExistsError, match="--overwrite"):
    convert_transformers_clip(bad, tmp_path / "out", allow_unused=[r".*"])
  with pytest.raises(FileNotFoundError, match="clip_config.json is missing"):
    load_clip(tmp_path / "empty")
