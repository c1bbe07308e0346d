"""A converted unCLIP (Karlo) pipeline as VideoFusion's base generator, end to end at toy
size: `convert unclip` of a tiny random pipeline -> a CLIP cache (`--text_hidden`) of the
synthetic clips made with a CLIP whose text tower is the pipeline's text encoder ->
configs/karlo.py -> `train()` with train.init_base_from -> `sample()` from a prompt
(the pipeline's CLIP text tower and prior, guidance with the empty prompt + learned null).

Slow (torch pipeline, conversion, three models compile): `make test-slow`. The plumbing
is tested fast in tests/test_unclip_conditions.py.
"""

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from configs import demo, karlo  # noqa: E402
from tests.convert.test_unclip_convert import TEXT_PROJ, save_tiny_pipeline  # noqa: E402
from tests.models.test_prior import TINY as TINY_PRIOR  # noqa: E402
from tests.models.test_prior import torch_prior  # noqa: E402
from tests.models.tiny_clip import train_bpe, write_vocab  # noqa: E402
from videofusion_jax import parallel  # noqa: E402
from videofusion_jax.convert import diffusers_unclip  # noqa: E402
from videofusion_jax.convert.converted import load_converted  # noqa: E402
from videofusion_jax.convert.transformers_clip import convert_transformers_clip  # noqa: E402
from videofusion_jax.data import video_io  # noqa: E402
from videofusion_jax.models.from_config import condition_of, model_spec  # noqa: E402
from videofusion_jax.sampling.conditions import sample_conditions  # noqa: E402
from videofusion_jax.sampling.generate import sample  # noqa: E402
from videofusion_jax.tools.clip_cache import build_clip_cache  # noqa: E402
from videofusion_jax.training.loop import create_state, train  # noqa: E402

CLIP_DIM = TEXT_PROJ["clip_embeddings_dim"]  # text_proj's width: CLIP embeddings = hidden
CONTEXT = 8  # tokens: text tower positions = prior's


def _clip_model(vocab):
  """A full transformers CLIP (both towers) whose text tower fits text_proj and the prior,
  as CLIP ViT-L/14 fits Karlo (768-d embeddings and hidden states, 77 tokens)."""
  torch.manual_seed(0)
  text = dict(
    vocab_size=len(vocab),
    hidden_size=CLIP_DIM,
    intermediate_size=24,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=CONTEXT,
    bos_token_id=len(vocab) - 2,
    eos_token_id=len(vocab) - 1,
    pad_token_id=1,
    hidden_act="quick_gelu",
  )
  vision = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=16,
    patch_size=4,
    hidden_act="quick_gelu",
  )
  return transformers.CLIPModel(
    transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=CLIP_DIM)
  ).eval()


@pytest.fixture(scope="module")
def karlo_folders(tmp_path_factory):
  """(converted pipeline OUT, converted full CLIP) sharing one text tower."""
  root = tmp_path_factory.mktemp("unclip_e2e")
  vocab = train_bpe(num_merges=60)
  full = _clip_model(vocab[0])
  text_encoder = transformers.CLIPTextModelWithProjection(full.config.text_config)
  text_encoder.config.projection_dim = CLIP_DIM
  text_encoder = transformers.CLIPTextModelWithProjection(text_encoder.config).eval()
  text_encoder.load_state_dict(
    {
      k: v
      for k, v in full.state_dict().items()
      if k.startswith(("text_model.", "text_projection."))
    }
  )
  src, _ = save_tiny_pipeline(
    root / "karlo",
    vocab=vocab,
    replace={
      "text_encoder": text_encoder,
      "prior": torch_prior(dict(TINY_PRIOR, num_embeddings=CONTEXT), seed=3),
    },
  )
  out = diffusers_unclip.convert_unclip_pipeline(src, root / "karlo_jax")
  full.save_pretrained(root / "clip_vit")
  clip = convert_transformers_clip(
    root / "clip_vit", root / "clip_jax", tokenizer=write_vocab(root / "tokenizer", *vocab)
  )
  return out, clip


def _config(out, cache):
  c = karlo.get_config(str(out))  # the decoder snippet: base, cond, image size 16
  c.data.source, c.data.num_clips, c.data.num_frames = "synthetic", 4, 4
  c.data.worker_count, c.data.clip_cache = 0, str(cache)
  c.model.residual = demo.get_config().model.residual
  c.model.dtype, c.model.remat, c.mesh.fsdp = "float32", False, 1
  c.train.num_steps, c.train.batch_size, c.train.log_every = 1, 2, 1
  c.train.tensorboard, c.train.sample_every = False, 0
  c.sample.num_steps, c.sample.num_videos, c.sample.batch_size = 2, 2, 2
  return c


def _flat(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, prefix + (k,)) if isinstance(v, dict) else {prefix + (k,): v})
  return out


@pytest.mark.slow
def test_converted_karlo_trains_and_samples_from_a_prompt(karlo_folders, tmp_path):
  out, clip = karlo_folders
  config = _config(out, tmp_path / "cache.npz")
  assert config.cond.kind == "unclip" and config.train.init_base_from == str(out / "decoder")

  # A cache without hidden states is refused before anything compiles.
  build_clip_cache(config, clip, tmp_path / "no_hidden.npz", batch_size=4)
  config.data.clip_cache = str(tmp_path / "no_hidden.npz")
  with pytest.raises(ValueError, match=r"lacks \['text_hidden', 'null_text_hidden'\]"):
    train(config, str(tmp_path / "refused"))
  build_clip_cache(config, clip, tmp_path / "cache.npz", batch_size=4, text_hidden=True)
  config.data.clip_cache = str(tmp_path / "cache.npz")

  # Step 0: the base generator and the condition module are the converted decoder and
  # text_proj, exactly.
  spec = model_spec(config)
  mesh = parallel.make_mesh(config.mesh)
  ts = create_state(spec, config, mesh, parallel.rules_from_config(config.mesh.rules))
  model = nnx.merge(ts.graphdef, ts.state)[0]
  _, decoder = load_converted(out / "decoder")
  _, text_proj = diffusers_unclip.load_condition(out / "decoder" / "condition")
  for part, want in (("base", decoder), ("condition", text_proj)):
    got = _flat(nnx.to_pure_dict(nnx.state(getattr(model, part), nnx.Param)))
    assert got.keys() == _flat(want).keys()
    for path, value in _flat(want).items():
      np.testing.assert_array_equal(np.asarray(got[path]), value, err_msg=str(path))

  metrics = train(config, str(tmp_path / "run"))
  assert np.isfinite([metrics["loss"], metrics["loss_centre"], metrics["loss_residual"]]).all()

  # Sampling: the pipeline's own CLIP text tower (OUT/clip) and prior (OUT/prior).
  prompts = ["a cat sitting on the mat", ""]
  (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
  config.sample.prompts_file = str(tmp_path / "prompts.txt")
  cond = sample_conditions(config, condition_of(spec.config), 2)
  with np.load(config.data.clip_cache) as cache:  # the same text tower, two conversions
    np.testing.assert_allclose(
      cond["null_text_embeds"][0], cache["null_text_embeds"], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(cond["null_text_mask"][0], cache["null_text_mask"])
  np.testing.assert_array_equal(cond["drop"], [False, True])  # the empty prompt
  np.testing.assert_allclose(cond["text_embeds"][1], cond["null_text_embeds"][1], atol=1e-6)
  assert np.abs(cond["text_embeds"][0] - cond["null_text_embeds"][0]).max() > 1e-3

  paths = sample(config, str(tmp_path / "run"))
  videos = [video_io.read_video(p) for p in paths if p.suffix == ".mp4"]
  assert [v.shape for v in videos] == [(4, 16, 16, 3)] * 2
  assert not np.array_equal(videos[0], videos[1])
  listing = (tmp_path / "run" / "samples" / "prompts.txt").read_text(encoding="utf-8")
  assert listing.splitlines() == ["video_000.mp4\ta cat sitting on the mat", "video_001.mp4\t"]
  assert jax.tree.leaves(cond)  # conditions were made for both videos


def test_karlo_config_names_the_missing_conversion(tmp_path):
  with pytest.raises(
    FileNotFoundError,
    match=r"decoder/config_snippet.py does not exist; "
    r"convert the Karlo pipeline first",
  ):
    karlo.get_config(str(tmp_path / "absent"))
