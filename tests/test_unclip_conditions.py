"""cond.kind="unclip" plumbing without torch: the CLIP cache's caption encodings reach
`batch["cond"]`, dropped clips (training's cond_drop_prob, guidance's unconditional
branch) take the empty prompt's text inputs with the learned null image embedding, and
missing inputs are named. The whole chain (converted Karlo -> train -> sample) is the
slow tests/test_unclip_e2e.py."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import demo
from videofusion_jax.data.conditions import condition_inputs, conditioned_source
from videofusion_jax.models.conditioning import Condition, ConditionConfig
from videofusion_jax.sampling.conditions import sample_conditions

E, W, L, K = 12, 8, 5, 6  # CLIP embedding, text hidden width, tokens, clips
UNCLIP = ConditionConfig(
  kind="unclip", embed_dim=E, extra_tokens=2, text_dim=W, context_dim=16, time_embed_dim=24
)


def _cache_arrays(seed=0):
  rng = np.random.RandomState(seed)
  lengths = np.array([2, 5, 3, 4, 2, 5])
  return {
    "image_embeds": rng.randn(K, E).astype(np.float32),
    "text_embeds": rng.randn(K, E).astype(np.float32),
    "text_hidden": rng.randn(K, L, W).astype(np.float32),
    "text_mask": np.arange(L)[None] < lengths[:, None],
    "keys": np.array([f"clip{i}" for i in range(K)]),
    "captions": np.array([f"caption {i}" for i in range(K)]),
    "null_text_embeds": rng.randn(E).astype(np.float32),
    "null_text_hidden": rng.randn(L, W).astype(np.float32),
    "null_text_mask": np.arange(L) < 2,
  }


def _write(path, arrays):
  np.savez(path, **arrays)
  return path


def _source():
  return [{"key": f"clip{i}", "video": np.zeros((4, 8, 8, 3), np.float32)} for i in range(K)]


def _data(cache):
  return ml_collections.ConfigDict({"clip_cache": str(cache), "source": "test"})


def test_training_batches_carry_caption_and_empty_prompt_encodings(tmp_path):
  arrays = _cache_arrays()
  source = conditioned_source(_source(), _data(_write(tmp_path / "c.npz", arrays)), UNCLIP)
  items = [source[i] for i in (4, 1)]
  batch = {k: np.stack([it[k] for it in items]) for k in items[0] if k != "caption"}
  cond = condition_inputs(batch, UNCLIP)["cond"]
  assert sorted(cond) == sorted(
    [
      "image_embed",
      "text_embeds",
      "text_hidden",
      "text_mask",
      "null_text_embeds",
      "null_text_hidden",
      "null_text_mask",
    ]
  )
  for name, array in (
    ("image_embed", "image_embeds"),
    ("text_embeds", "text_embeds"),
    ("text_hidden", "text_hidden"),
    ("text_mask", "text_mask"),
  ):
    np.testing.assert_array_equal(cond[name], arrays[array][[4, 1]])
  for name in ("null_text_embeds", "null_text_hidden", "null_text_mask"):
    np.testing.assert_array_equal(cond[name], np.stack([arrays[name]] * 2))


def test_dropped_clips_see_the_null_image_embedding_and_the_empty_prompt():
  cond_module = Condition(UNCLIP, rngs=nnx.Rngs(0))
  a = {k: jnp.asarray(v) for k, v in _cache_arrays().items() if v.dtype.kind != "U"}
  b = 3
  null = {
    n: jnp.broadcast_to(a[n], (b,) + a[n].shape)
    for n in ("null_text_embeds", "null_text_hidden", "null_text_mask")
  }
  caption = {
    "image_embed": a["image_embeds"][:b],
    "text_embeds": a["text_embeds"][:b],
    "text_hidden": a["text_hidden"][:b],
    "text_mask": a["text_mask"][:b],
  }
  drop = jnp.array([True, False, True])
  got = cond_module(dict(caption, drop=drop, **null))
  # What Karlo's pipeline feeds its unconditional rows: the empty prompt's text inputs
  # and the learned null image embedding.
  empty = {
    "image_embed": caption["image_embed"],
    "text_embeds": null["null_text_embeds"],
    "text_hidden": null["null_text_hidden"],
    "text_mask": null["null_text_mask"],
  }
  want_dropped = cond_module(dict(empty, drop=jnp.ones((b,), bool)))
  want_kept = cond_module(dict(caption, drop=jnp.zeros((b,), bool)))
  for key in ("class_labels", "context", "context_mask"):
    for row, want in ((0, want_dropped), (1, want_kept), (2, want_dropped)):
      np.testing.assert_allclose(got[key][row], want[key][row], rtol=1e-6, atol=1e-6)
  # The dropped rows no longer depend on the caption at all.
  other = cond_module(dict(caption, drop=drop, **null, text_embeds=-caption["text_embeds"]))
  np.testing.assert_array_equal(other["class_labels"][0], got["class_labels"][0])
  assert np.abs(np.asarray(other["class_labels"][1] - got["class_labels"][1])).max() > 1e-3
  with pytest.raises(ValueError, match="not both null_text_embeds and null_text_hidden"):
    cond_module(dict(caption, drop=drop, null_text_embeds=null["null_text_embeds"]))
  with pytest.raises(ValueError, match=r"cond\['null_text_hidden'\] has shape"):
    cond_module(dict(caption, drop=drop, **dict(null, null_text_hidden=jnp.zeros((b, 2, W)))))


@pytest.mark.parametrize("drop_array", ["text_hidden", "null_text_embeds"])
def test_a_cache_without_text_inputs_is_named(tmp_path, drop_array):
  arrays = _cache_arrays()
  del arrays[drop_array]
  cache = _write(tmp_path / "c.npz", arrays)
  with pytest.raises(
    ValueError,
    match=rf"data.clip_cache=.*c.npz.*lacks \['{drop_array}'\]"
    r".*--text_hidden",
  ):
    conditioned_source(_source(), _data(cache), UNCLIP)


def test_missing_cache_widths_and_batch_entries_are_named(tmp_path):
  with pytest.raises(
    ValueError,
    match=r"cond.kind='unclip' needs data.clip_cache.*"
    r"--text_hidden",
  ):
    conditioned_source(_source(), _data(""), UNCLIP)
  arrays = _cache_arrays()
  arrays["text_embeds"] = np.zeros((K, E + 1), np.float32)
  with pytest.raises(ValueError, match=r"text_embeds are 13-d; cond.embed_dim=12"):
    conditioned_source(_source(), _data(_write(tmp_path / "w.npz", arrays)), UNCLIP)
  batch = {
    "video": np.zeros((2, 4, 8, 8, 3)),
    "image_embed": np.zeros((2, E)),
    "text_embeds": np.zeros((2, E)),
    "text_hidden": np.zeros((2, L, W)),
  }
  with pytest.raises(ValueError, match=r"needs the data entry 'text_mask'.*--text_hidden"):
    condition_inputs(batch, UNCLIP)


def test_sampling_from_a_cache_and_bad_sample_inputs(tmp_path):
  arrays = _cache_arrays(1)
  config = demo.get_config()
  config.sample.image_embeds = str(_write(tmp_path / "c.npz", arrays))
  cond = sample_conditions(config, UNCLIP, 8)
  rows = np.arange(8) % K
  np.testing.assert_array_equal(cond["image_embed"], arrays["image_embeds"][rows])
  np.testing.assert_array_equal(cond["text_hidden"], arrays["text_hidden"][rows])
  np.testing.assert_array_equal(cond["text_mask"], arrays["text_mask"][rows])
  np.testing.assert_array_equal(
    cond["null_text_hidden"], np.stack([arrays["null_text_hidden"]] * 8)
  )
  del arrays["text_hidden"]
  config.sample.image_embeds = str(_write(tmp_path / "no_text.npz", arrays))
  with pytest.raises(ValueError, match=r"no \['text_hidden'\] array.*--text_hidden"):
    sample_conditions(config, UNCLIP, 2)
  config.sample.image_embeds = ""
  config.sample.prompt = "a cat"
  with pytest.raises(ValueError, match=r"text prompts need sample.clip_dir"):
    sample_conditions(config, UNCLIP, 2)
