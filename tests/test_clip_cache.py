"""`python -m videofusion_jax.tools.clip_cache`: the npz the prior and conditioned training read.

A tiny random NNX CLIP is saved in the converted layout (no torch needed); the cache of
a synthetic source and of a captioned list must hold, row by row, what encoding that
item directly gives.
"""

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from configs import base
from tests.models.tiny_clip import save_random_clip
from videofusion_jax.data.sources import make_source
from videofusion_jax.models.clip import preprocess_frames
from videofusion_jax.models.clip_tokenizer import CLIPTokenizer
from videofusion_jax.tools.clip_cache import ClipCacheSource, build_clip_cache

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
  return save_random_clip(tmp_path_factory.mktemp("clip_cache"))


def _config():
  c = base.get_config()
  c.data.num_clips, c.data.num_frames, c.data.image_size = 5, 4, 16
  return c


def test_synthetic_source_cache_rows_equal_direct_encoding(clip_dir, tmp_path):
  path, towers = clip_dir
  config = _config()
  out = build_clip_cache(config, path, tmp_path / "cache.npz", batch_size=2)  # 2+2+1
  data = np.load(out)
  assert sorted(data.files) == [
    "captions",
    "class_ids",
    "image_embeds",
    "keys",
    "null_text_embeds",
    "null_text_mask",
    "null_text_tokens",
    "text_embeds",
    "text_mask",
    "text_tokens",
  ]
  assert data["image_embeds"].shape == (5, 16) and data["image_embeds"].dtype == np.float32
  assert data["text_tokens"].shape == (5, 12) and data["text_tokens"].dtype == np.int32
  assert data["keys"].tolist() == [f"synthetic:{i}" for i in range(5)]
  assert data["captions"].tolist() == [""] * 5
  source = make_source(config.data, seed=config.seed)
  # Row i is the centre frame ((N-1)//2 = 1) of item i, encoded alone.
  for i in (0, 4):
    frame = source[i]["video"][1][None]
    want = towers["vision"](preprocess_frames(jnp.asarray(frame), 24))[1][0]
    np.testing.assert_allclose(data["image_embeds"][i], want, rtol=1e-5, atol=1e-5)
  assert data["class_ids"].tolist() == [int(source[i]["label"]) for i in range(5)]
  # No captions: every row holds the empty prompt's embedding.
  tokens = CLIPTokenizer.from_dir(path, context_length=12)([""])
  want = towers["text"](jnp.asarray(tokens))[1][0]
  np.testing.assert_allclose(data["text_embeds"], np.tile(want, (5, 1)), rtol=1e-5, atol=1e-5)
  assert np.all(data["text_tokens"] == tokens[0])
  np.testing.assert_array_equal(data["null_text_embeds"], data["text_embeds"][0])
  assert data["null_text_mask"].tolist() == [True, True] + [False] * 10  # bos, eos
  assert len(np.unique(data["image_embeds"].round(5), axis=0)) == 5


def test_captioned_source_and_text_hidden(clip_dir, tmp_path, caplog):
  path, towers = clip_dir
  rng = np.random.default_rng(0)
  captions = ["a red square", "", "a red square", "two blue circles bouncing around " * 3]
  source = [
    {
      "video": rng.uniform(-1, 1, (3, 20, 30, 3)).astype(np.float32),
      "caption": c,
      "videoid": f"vid{i}",
    }
    for i, c in enumerate(captions)
  ]
  out = build_clip_cache(
    _config(), path, tmp_path / "c.npz", batch_size=3, text_hidden=True, source=source
  )
  data = np.load(out)
  assert "class_ids" not in data.files
  assert data["keys"].tolist() == ["vid0", "vid1", "vid2", "vid3"]
  assert data["captions"].tolist() == captions
  assert data["text_hidden"].shape == (4, 12, 32)
  tok = CLIPTokenizer.from_dir(path, context_length=12)
  hidden, embeds = towers["text"](jnp.asarray(tok(captions)))
  np.testing.assert_allclose(data["text_embeds"], embeds, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(data["text_hidden"], hidden, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(data["text_tokens"], tok(captions))
  np.testing.assert_array_equal(data["text_embeds"][0], data["text_embeds"][2])
  np.testing.assert_array_equal(data["null_text_embeds"], data["text_embeds"][1])
  np.testing.assert_array_equal(data["null_text_hidden"], data["text_hidden"][1])
  # The mask covers bos .. the first eos.
  eos = tok.eos_id
  for row, ids in zip(data["text_mask"], data["text_tokens"]):
    assert row.sum() == list(ids).index(eos) + 1 and row[: row.sum()].all()
  assert data["text_mask"][3].all()  # truncated: eos is last
  assert any("truncated" in r.getMessage() for r in caplog.records)  # the long caption
  want = towers["vision"](preprocess_frames(jnp.asarray(source[3]["video"][1][None]), 24))[1]
  np.testing.assert_allclose(data["image_embeds"][3], want[0], rtol=1e-5, atol=1e-5)


def test_clip_cache_source_adds_rows_and_checks_keys(clip_dir, tmp_path):
  path, _ = clip_dir
  config = _config()
  out = build_clip_cache(config, path, tmp_path / "cache.npz", batch_size=5, text_hidden=True)
  data = np.load(out)
  source = make_source(config.data, seed=config.seed)
  wrapped = ClipCacheSource(source, out, name="synthetic")
  item = wrapped[3]
  np.testing.assert_array_equal(item["image_embed"], data["image_embeds"][3])
  np.testing.assert_array_equal(item["video"], source[3]["video"])
  assert item["caption"] == "" and item["text_hidden"].shape == (12, 32)
  assert len(wrapped) == 5
  with pytest.raises(ValueError, match="has 5 rows; data.source='synthetic' has 4 videos"):
    ClipCacheSource([source[i] for i in range(4)], out, name="synthetic")
  renamed = [dict(source[i], videoid=f"v{i}") for i in range(5)]
  with pytest.raises(ValueError, match="row 0 is for 'synthetic:0', but video 0 .* is 'v0'"):
    ClipCacheSource(renamed, out, name="synthetic")
  with pytest.raises(FileNotFoundError, match="tools.clip_cache"):
    ClipCacheSource(source, tmp_path / "none.npz")


def test_bad_inputs(clip_dir, tmp_path):
  path, _ = clip_dir
  with pytest.raises(FileNotFoundError, match="clip_config.json is missing"):
    build_clip_cache(_config(), tmp_path, tmp_path / "c.npz")
  with pytest.raises(ValueError, match="expected a path ending in .npz"):
    build_clip_cache(_config(), path, tmp_path / "c.txt", limit=1)
  with pytest.raises(ValueError, match=r"has video shape \(4, 4, 3\)"):
    build_clip_cache(
      _config(), path, tmp_path / "c.npz", source=[{"video": np.zeros((4, 4, 3), np.float32)}]
    )
  assert not list(tmp_path.glob("*.npz"))


def test_cli(clip_dir, tmp_path):
  path, _ = clip_dir
  out = tmp_path / "cli.npz"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.tools.clip_cache",
      "--config=configs/base.py",
      f"--clip={path}",
      f"--out={out}",
      "--limit=2",
      "--batch_size=2",
      "--config.data.num_frames=3",
      "--config.data.image_size=16",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert f"wrote {out}" in run.stdout
  assert np.load(out)["image_embeds"].shape == (2, 16)
