"""CLIP in NNX against transformers' PyTorch CLIP, and the BPE tokenizer against its own.

Tiny random torch towers (nothing downloaded) are converted through the table of
`convert/transformers_clip.py` and run on the same inputs; the tokenizer is compared id
for id with transformers' `CLIPTokenizer` on a vocabulary trained in `tiny_clip.py`.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.models.tiny_clip import text_config_kwargs, train_bpe, vision_config_kwargs, write_vocab
from videofusion_jax.convert.transformers_clip import clip_param_table, convert_clip_state_dict
from videofusion_jax.models.clip import (
  CLIPTextModelWithProjection,
  CLIPVisionConfig,
  CLIPVisionModelWithProjection,
  clip_config_from_transformers,
  preprocess_frames,
)
from videofusion_jax.models.clip_tokenizer import CLIPTokenizer

torch = pytest.importorskip("torch", reason="parity needs the [convert] extra (torch)")
transformers = pytest.importorskip(
  "transformers", reason="parity needs the [convert] extra (transformers)"
)

TOL = 1e-4


def _ours(torch_model, config_dict, tower):
  """Our tower holding the torch model's converted weights."""
  config = clip_config_from_transformers(config_dict)
  sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  params = convert_clip_state_dict(sd, config)[tower]
  cls, c = (
    (CLIPTextModelWithProjection, config.text)
    if tower == "text"
    else (CLIPVisionModelWithProjection, config.vision)
  )
  abstract = nnx.eval_shape(lambda: cls(c, rngs=nnx.Rngs(0)))
  state = nnx.state(abstract, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(nnx.graphdef(abstract), state)


def _randomise(model, seed):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))  # LayerNorms and biases away from 1 / 0
  return model.eval()


def _close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL * max(1.0, np.abs(want).max()))


# Token ids of 3 prompts of 16: bos 48, tokens 3..39, then the end token and padding.
# Row 0 also holds 45 and 2 before its end token (position 7), so the other pooling rule
# would pick another position: argmax(ids) -> 0 (bos) when the end token is 40, and
# "first id 2" -> 3 for the legacy config whose real end token is 49 (the largest id).
def _ids(end):
  ids = np.random.default_rng(0).integers(3, 40, (3, 16))
  ids[:, 0] = 48
  ids[0, 2], ids[0, 3], ids[0, 7:] = 45, 2, end  # padded with the end token
  ids[1, 11], ids[1, 12:] = end, 1  # padded with pad id 1
  ids[2, 15] = end
  return ids


@pytest.mark.parametrize("eos,act", [(2, "quick_gelu"), (40, "gelu"), (40, "quick_gelu")])
def test_text_tower_matches_transformers(eos, act):
  """eos_token_id=2 (old configs) pools at argmax(ids); others at the first eos."""
  config = transformers.CLIPTextConfig(**text_config_kwargs(eos_token_id=eos, hidden_act=act))
  tm = _randomise(transformers.CLIPTextModelWithProjection(config), seed=eos)
  ours = _ours(tm, config.to_dict(), "text")
  ids = _ids(49 if eos == 2 else eos)
  with torch.no_grad():
    want = tm(torch.from_numpy(ids))
  hidden, embeds = ours(jnp.asarray(ids))
  _close(hidden, want.last_hidden_state.numpy())
  _close(embeds, want.text_embeds.numpy())
  # Row 0 pools at its end token (7), and the other rule's position gives another vector.
  _close(embeds[0], ours.text_projection(hidden[0, 7]))
  other = ours.text_projection(hidden[0, 3 if eos == 2 else 0])
  assert float(jnp.abs(embeds[0] - other).max()) > 1e-3


def test_text_causal_mask_ignores_later_tokens():
  """Changing tokens after position p leaves hidden states up to p unchanged."""
  config = transformers.CLIPTextConfig(**text_config_kwargs())
  ours = _ours(transformers.CLIPTextModelWithProjection(config), config.to_dict(), "text")
  ids = _ids(40)
  changed = ids.copy()
  changed[:, 10:] = 5
  a, _ = ours(jnp.asarray(ids))
  b, _ = ours(jnp.asarray(changed))
  np.testing.assert_array_equal(np.asarray(a[:, :10]), np.asarray(b[:, :10]))
  assert float(jnp.abs(a[:, 10:] - b[:, 10:]).max()) > 1e-3


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_vision_tower_matches_transformers(act):
  config = transformers.CLIPVisionConfig(**vision_config_kwargs(hidden_act=act))
  vm = _randomise(transformers.CLIPVisionModelWithProjection(config), seed=1)
  ours = _ours(vm, config.to_dict(), "vision")
  x = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)
  with torch.no_grad():
    want = vm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  hidden, embeds = ours(jnp.asarray(x))
  _close(hidden, want.last_hidden_state.numpy())
  _close(embeds, want.image_embeds.numpy())


def test_key_map_covers_every_parameter():
  """Every torch parameter of both towers has exactly one entry of the table."""
  for cfg_cls, model_cls, ours_cls, kw, tower in (
    (
      transformers.CLIPTextConfig,
      transformers.CLIPTextModelWithProjection,
      CLIPTextModelWithProjection,
      text_config_kwargs(),
      "text",
    ),
    (
      transformers.CLIPVisionConfig,
      transformers.CLIPVisionModelWithProjection,
      CLIPVisionModelWithProjection,
      vision_config_kwargs(),
      "vision",
    ),
  ):
    torch_keys = set(model_cls(cfg_cls(**kw)).state_dict())
    c = getattr(clip_config_from_transformers(cfg_cls(**kw).to_dict()), tower)
    table = clip_param_table(nnx.eval_shape(lambda: ours_cls(c, rngs=nnx.Rngs(0))))
    assert sorted(e.torch_key for e in table) == sorted(torch_keys)


def test_config_from_transformers_dicts():
  full = transformers.CLIPConfig(
    text_config=text_config_kwargs(eos_token_id=2),
    vision_config=vision_config_kwargs(),
    projection_dim=20,
  )
  c = clip_config_from_transformers(full.to_dict())
  assert (c.text.projection_dim, c.vision.projection_dim) == (20, 20)  # the top level wins
  assert c.text.eos_token_id == 2 and c.vision.patch_size == 4
  # save_pretrained leaves out default fields: they take transformers' defaults.
  d = clip_config_from_transformers({"model_type": "clip_vision_model"}).vision
  assert (d.hidden_size, d.patch_size, d.image_size, d.hidden_act) == (768, 32, 224, "quick_gelu")
  with pytest.raises(ValueError, match="model_type='bert'"):
    clip_config_from_transformers({"model_type": "bert"})
  with pytest.raises(ValueError, match="hidden_act='swish2'"):
    clip_config_from_transformers({"model_type": "clip_text_model", "hidden_act": "swish2"})
  with pytest.raises(ValueError, match="not divisible by num_attention_heads=5"):
    clip_config_from_transformers({"model_type": "clip_text_model", "num_attention_heads": 5})


def test_bad_input_shapes_raise():
  vision = CLIPVisionModelWithProjection(
    CLIPVisionConfig(**vision_config_kwargs()), rngs=nnx.Rngs(0)
  )
  with pytest.raises(ValueError, match=r"expected \(B, 16, 16, 3\)"):
    vision(jnp.zeros((1, 3, 16, 16)))
  config = clip_config_from_transformers(
    transformers.CLIPTextConfig(**text_config_kwargs()).to_dict()
  )
  text = CLIPTextModelWithProjection(config.text, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="max_position_embeddings=16"):
    text(jnp.zeros((1, 17), jnp.int32))


def test_preprocess_matches_clip_image_processor():
  """Shrinking and enlarging, non-square: equal to transformers' PIL processor to within
  one uint8 level (rounding), and on >99% of values to 1e-5 (measured: 99.8%)."""
  proc_mod = pytest.importorskip("transformers.models.clip.image_processing_pil_clip")
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:40, 0:56]
  smooth = (
    np.stack(
      [
        128 + 100 * np.sin(xx / 5.0),
        128 + 100 * np.cos(yy / 7.0),
        128 + 80 * np.sin((xx + yy) / 9.0),
      ],
      -1,
    )
    .round()
    .astype(np.uint8)
  )
  noise = rng.integers(0, 256, (40, 56, 3)).astype(np.uint8)
  images = np.stack([smooth, noise, noise[:, ::-1]])
  for size in (24, 64):  # 40x56 -> 24x33 (shrink) and 64x89 (enlarge)
    proc = proc_mod.CLIPImageProcessorPil(
      size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )
    want = proc(images=list(images), return_tensors="np")["pixel_values"]
    got = preprocess_frames(jnp.asarray(images.astype(np.float32) / 127.5 - 1.0), size)
    diff = np.abs(np.asarray(got) - want.transpose(0, 2, 3, 1))
    assert diff.max() < 1.01 / 255 / 0.26
    assert np.mean(diff < 1e-5) > 0.99
  with pytest.raises(ValueError, match=r"expected \(B, H, W, 3\)"):
    preprocess_frames(jnp.zeros((2, 3, 8, 8)))


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
  return write_vocab(tmp_path_factory.mktemp("clip_vocab"), *train_bpe())


CAPTIONS = [
  "A photo of a cat sitting on the mat.",
  "it's   a\tsunny DAY,  isn't it? We'll see; they'd go!!",
  "Café crème brûlée — naïve façade",
  "東京の夜景 😀🎉 1234567",
  "ﬁne ﬀ Ⅻ ½ ² (unicode numbers and ligatures)",
  "hello<|endoftext|>world, don't ''s ?'s",
  "zebra quokka xylophone pterodactyl",  # words outside the corpus: bytes and pieces
  "a\u0301 e\u0301 NFC",
  "",
  "   ",
  " ".join(["a man playing guitar on stage"] * 20),  # > 75 tokens: truncated
]


def test_tokenizer_ids_equal_transformers(vocab_dir, caplog):
  hf = transformers.CLIPTokenizer.from_pretrained(str(vocab_dir))
  ours = CLIPTokenizer.from_dir(vocab_dir)
  want = np.asarray(hf(CAPTIONS, padding="max_length", max_length=77, truncation=True)["input_ids"])
  with caplog.at_level("WARNING"):
    got = ours(CAPTIONS)
  assert got.dtype == np.int32 and got.shape == (len(CAPTIONS), 77)
  np.testing.assert_array_equal(got, want)
  # The long prompt fills the context and the warning names it; the empty one is
  # [bos, eos, pad...] (unconditional).
  assert got[-1, -1] == ours.eos_id and len(set(got[-1, 1:-1])) > 5
  assert any(
    "a man playing guitar" in r.getMessage() and "truncated" in r.getMessage()
    for r in caplog.records
  )
  assert got[-3, :3].tolist() == [ours.bos_id, ours.eos_id, ours.pad_id]
  assert ours.pad_id == ours.eos_id  # transformers' default pad token


def test_tokenizer_pad_token_and_errors(vocab_dir, tmp_path):
  (vocab_dir / "tokenizer_config.json").write_text('{"pad_token": "!"}')
  try:
    tok = CLIPTokenizer.from_dir(vocab_dir)
    hf = transformers.CLIPTokenizer.from_pretrained(str(vocab_dir))
    want = hf(["a cat"], padding="max_length", max_length=77)["input_ids"]
    assert tok.pad_id == tok.encoder["!"]
    np.testing.assert_array_equal(tok(["a cat"]), want)
  finally:
    (vocab_dir / "tokenizer_config.json").unlink()
  with pytest.raises(FileNotFoundError, match=str(tmp_path / "vocab.json")):
    CLIPTokenizer.from_dir(tmp_path)
  with pytest.raises(ValueError, match="'<|startoftext|>'"):
    CLIPTokenizer({"a": 0}, [])
  with pytest.raises(ValueError, match="prompt 1 is int"):
    CLIPTokenizer.from_dir(vocab_dir)(["ok", 3])
