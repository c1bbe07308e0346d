"""`convert unclip`: a whole (tiny, random) diffusers unCLIP pipeline folder in one call.

The folder is written with `save_pretrained` of tiny torch modules (no Hub): decoder,
text_proj, prior, super_res_first/last, text_encoder, tokenizer, schedulers. Parity:
text_proj alone vs our cond.kind="unclip" Condition; one decoder step (text_proj +
UNet2DConditionModel with the pipeline's attention mask, guidance batch) vs our base
U-Net + Condition loaded through the generated config and train.init_base_from; one
super-resolution call vs the torch UNet2DModel on the bicubically upsampled image.
"""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel  # noqa: E402

from configs import demo  # noqa: E402
from tests.convert.tiny_unets import build_torch_unet  # noqa: E402
from tests.models.test_prior import TINY as TINY_PRIOR  # noqa: E402
from tests.models.test_prior import torch_prior  # noqa: E402
from tests.models.tiny_clip import text_config_kwargs, train_bpe, write_vocab  # noqa: E402
from videofusion_jax.convert import diffusers_unclip  # noqa: E402
from videofusion_jax.models.conditioning import Condition, ConditionConfig  # noqa: E402
from videofusion_jax.models.from_config import videofusion_config  # noqa: E402
from videofusion_jax.models.unet import UNet  # noqa: E402
from videofusion_jax.training import init_from  # noqa: E402

# Sized for the tiny "karlo" decoder of tiny_unets (time embedding 128, tokens 48 wide).
TEXT_PROJ = dict(
  clip_extra_context_tokens=4, clip_embeddings_dim=12, time_embed_dim=128, cross_attention_dim=48
)
# Karlo's super-res U-Nets: noisy + upsampled image in, eps out, ResNet resampling, no
# attention, no class embedding (sizes shrunk; 16 -> 32 here, 64 -> 256 in Karlo).
SUPER_RES = dict(
  sample_size=32,
  in_channels=6,
  out_channels=3,
  block_out_channels=(32, 64),
  layers_per_block=1,
  down_block_types=("ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"),
  up_block_types=("ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"),
  add_attention=False,
  norm_num_groups=8,
  resnet_time_scale_shift="scale_shift",
)


def _randomise(module, seed):
  torch.manual_seed(seed)
  with torch.no_grad():  # zero/unit defaults would hide transposition mistakes
    for p in module.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return module.eval()


def _close(got, want, tol=1e-5):
  got, want = np.asarray(got), np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=tol * max(1.0, np.abs(want).max()))


def _text_inputs(batch=2, tokens=6, seed=0):
  """CLIP-like inputs of a guidance batch: (image embeds (B,), prompt embeds, hidden
  states and masks for [empty prompt x B, prompts x B]), masks with padding."""
  rng = np.random.RandomState(seed)
  e = TEXT_PROJ["clip_embeddings_dim"]
  image = rng.randn(batch, e).astype(np.float32)
  prompt = rng.randn(2 * batch, e).astype(np.float32)
  hidden = rng.randn(2 * batch, tokens, e).astype(np.float32)
  lengths = np.array([2] * batch + [tokens, 3][:batch])  # the empty prompt: BOS + EOS
  mask = np.arange(tokens)[None, :] < lengths[:, None]
  return image, prompt, hidden, mask


def _torch_text_proj(model, image, prompt, hidden):
  with torch.no_grad():
    states, additive = model(
      image_embeddings=torch.from_numpy(image),
      prompt_embeds=torch.from_numpy(prompt),
      text_encoder_hidden_states=torch.from_numpy(hidden),
      do_classifier_free_guidance=True,
    )
  return states.numpy(), additive.numpy()


def _our_cond(image, prompt, hidden, mask):
  """Our condition inputs for the same guidance batch: the null image embedding first."""
  b = image.shape[0]
  return {
    "image_embed": jnp.asarray(np.concatenate([image, image])),
    "text_embeds": jnp.asarray(prompt),
    "text_hidden": jnp.asarray(hidden),
    "text_mask": jnp.asarray(mask),
    "drop": jnp.arange(2 * b) < b,
  }


def save_tiny_pipeline(root, replace=None, vocab=None):
  """Write a tiny unCLIP pipeline folder at `root` as UnCLIPPipeline.save_pretrained lays
  it out -> (root, torch modules). `replace` swaps components by name (e.g. a text
  encoder and prior that fit text_proj's widths, tests/test_unclip_e2e.py); `vocab` is
  train_bpe's (vocab, merges) for tokenizer/."""
  modules = {
    "decoder": build_torch_unet("karlo", seed=1),
    "text_proj": _randomise(UnCLIPTextProjModel(**TEXT_PROJ), 2),
    "prior": torch_prior(TINY_PRIOR, seed=3),
    "super_res_first": _randomise(diffusers.UNet2DModel(**SUPER_RES), 4),
    "super_res_last": _randomise(diffusers.UNet2DModel(**SUPER_RES), 5),
    "text_encoder": transformers.CLIPTextModelWithProjection(
      transformers.CLIPTextConfig(**text_config_kwargs())
    ).eval(),
  }
  modules.update(replace or {})
  for name, module in modules.items():
    module.save_pretrained(root / name)
  write_vocab(root / "tokenizer", *(vocab or train_bpe(num_merges=60)))
  for name, variance in (
    ("prior_scheduler", "fixed_small_log"),
    ("decoder_scheduler", "learned_range"),
    ("super_res_scheduler", "fixed_small_log"),
  ):
    diffusers.UnCLIPScheduler(variance_type=variance).save_pretrained(root / name)
  index = {"_class_name": "UnCLIPPipeline", "_diffusers_version": diffusers.__version__}
  index.update({n: ["diffusers", type(m).__name__] for n, m in modules.items()})
  (root / "model_index.json").write_text(json.dumps(index))
  return root, modules


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
  """A tiny unCLIP pipeline folder as UnCLIPPipeline.save_pretrained lays it out."""
  return save_tiny_pipeline(tmp_path_factory.mktemp("unclip") / "karlo")


@pytest.fixture(scope="module")
def converted(pipeline, tmp_path_factory):
  """The pipeline converted by what `convert unclip` calls. Not the CLI's main in-process:
  importing `convert.__main__` defines its absl flags, which collide with other CLIs'
  (`--out` of tools.clip_cache) in the same test process."""
  src, _ = pipeline
  out = tmp_path_factory.mktemp("converted") / "karlo_jax"
  diffusers_unclip.convert_unclip_pipeline(src, out)
  return out


def test_text_proj_alone_matches_diffusers(pipeline):
  _, modules = pipeline
  config = diffusers_unclip.condition_config_from_text_proj(dict(modules["text_proj"].config))
  params = diffusers_unclip.convert_text_proj(
    {k: v.numpy() for k, v in modules["text_proj"].state_dict().items()}, config
  )
  ours = diffusers_unclip.condition_with_params(config, params)
  image, prompt, hidden, mask = _text_inputs()
  want_states, want_additive = _torch_text_proj(modules["text_proj"], image, prompt, hidden)
  got = ours(_our_cond(image, prompt, hidden, mask))
  _close(got["class_labels"], want_additive)
  _close(got["context"], want_states)
  # The pipeline's decoder mask: the K extra tokens always attended, then the text mask.
  want_mask = np.pad(
    mask, ((0, 0), (TEXT_PROJ["clip_extra_context_tokens"], 0)), constant_values=True
  )
  np.testing.assert_array_equal(np.asarray(got["context_mask"]), want_mask)
  # The (B, -1, K) reshape + transpose is what makes token k: a plain (B, K, D) reshape
  # of the same projection would give different tokens.
  plain = ours.extra_tokens(jnp.asarray(image)).reshape(2, 4, 48)
  assert np.abs(np.asarray(plain) - want_states[2:, :4]).max() > 1e-2


def test_cli_writes_every_component_and_a_summary(converted):
  summary = json.loads((converted / "unclip_pipeline.json").read_text())["components"]
  assert summary["decoder"] == "converted"
  assert summary["text_proj"] == "converted into decoder/condition"
  for name in ("prior", "super_res_first", "super_res_last", "text_encoder"):
    assert summary[name] == "converted", name
  assert sorted(summary["schedulers"]) == [
    "decoder_scheduler",
    "prior_scheduler",
    "super_res_scheduler",
  ]
  for sub in (
    "decoder/params",
    "decoder/condition/params",
    "prior/params",
    "clip/params",
    "clip/vocab.json",
    "super_res_first/params",
    "super_res_last/params",
    "schedulers/decoder_scheduler.json",
  ):
    assert (converted / sub).exists(), sub
  assert not list(converted.parent.glob(".*partial*"))


def test_decoder_step_through_the_snippet_and_init_base_from_matches_diffusers(pipeline, converted):
  """config_snippet.apply -> VideoFusion config -> init_base_from's parameters for
  `base` and `condition` -> one guided decoder call equals text_proj + the torch decoder
  with the attention mask the pipeline builds."""
  _, modules = pipeline
  config = demo.get_config()
  snippet = {}
  exec((converted / "decoder" / "config_snippet.py").read_text(), snippet)  # noqa: S102
  snippet["apply"](config)
  vf = videofusion_config(config)
  updates = init_from.initial_params(vf, config.train, ema=None)
  assert {k[0] for k in updates} == {"base", "condition"}
  base = _module_with(UNet(vf.base_unet(), rngs=_rngs()), updates, "base")
  condition = _module_with(Condition(vf.cond, rngs=_rngs()), updates, "condition")

  image, prompt, hidden, mask = _text_inputs()
  states, additive = _torch_text_proj(modules["text_proj"], image, prompt, hidden)
  x = np.random.RandomState(1).randn(4, 3, 16, 16).astype(np.float32)
  t = np.array([999, 999, 640, 640])
  decoder_mask = np.pad(mask, ((0, 0), (4, 0)), constant_values=True)
  with torch.no_grad():
    want = modules["decoder"](
      torch.from_numpy(x),
      torch.from_numpy(t),
      encoder_hidden_states=torch.from_numpy(states),
      class_labels=torch.from_numpy(additive),
      attention_mask=torch.from_numpy(decoder_mask),
    ).sample.numpy()
  got = base(
    jnp.asarray(x.transpose(0, 2, 3, 1)),
    jnp.asarray(t),
    **condition(_our_cond(image, prompt, hidden, mask)),
  )
  _close(np.asarray(got).transpose(0, 3, 1, 2), want)
  # Without the mask the padded text tokens are attended and the output moves.
  unmasked = base(
    jnp.asarray(x.transpose(0, 2, 3, 1)),
    jnp.asarray(t),
    **{**condition(_our_cond(image, prompt, hidden, mask)), "context_mask": None},
  )
  assert np.abs(np.asarray(unmasked).transpose(0, 3, 1, 2) - want).max() > 1e-3


def test_super_res_matches_the_torch_unet2d_on_the_bicubic_upsample(pipeline, converted):
  """load_superres(super_res_first/) is our SuperRes kind (aug_embedding=False, bicubic,
  no residual input); one denoising call equals UNet2DModel(cat[noisy, upsampled])."""
  _, modules = pipeline
  sr = diffusers_unclip.load_superres(converted / "super_res_first")
  assert (sr.config.image_size, sr.config.low_res_size) == (32, 16)
  assert sr.unet.class_embedding is None
  rng = np.random.RandomState(2)
  low = np.clip(rng.randn(2, 3, 16, 16), -1, 1).astype(np.float32)
  z = rng.randn(2, 3, 32, 32).astype(np.float32)
  t = np.array([871, 871])  # the two images are the two frames of one clip
  with torch.no_grad():
    up = torch.nn.functional.interpolate(
      torch.from_numpy(low), size=[32, 32], mode="bicubic", align_corners=False, antialias=True
    )
    want = modules["super_res_first"](
      torch.cat([torch.from_numpy(z), up], dim=1), torch.from_numpy(t)
    ).sample.numpy()
  alphas_cumprod = jnp.linspace(0.999, 0.01, 1000)  # unused: no augmentation, eps output
  video = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))[None]  # (1, 2, H, W, C)
  got = sr(video(z), jnp.asarray(t[:1]), alphas_cumprod, cond={"low_res": video(low)}).eps
  _close(np.asarray(got[0]).transpose(0, 3, 1, 2), want)
  snippet = (converted / "super_res_last" / "config_snippet.py").read_text()
  assert "c.model.aug_embedding = False" in snippet and "upsample = 'bicubic'" in snippet


def test_absent_components_are_skipped_and_a_malformed_one_is_named(pipeline, tmp_path, caplog):
  src, _ = pipeline
  partial = tmp_path / "partial"
  partial.mkdir()
  shutil.copy(src / "model_index.json", partial / "model_index.json")
  for name in ("decoder", "text_proj"):
    shutil.copytree(src / name, partial / name)
  with caplog.at_level("INFO", logger="absl"):
    out = diffusers_unclip.convert_unclip_pipeline(partial, tmp_path / "out")
  summary = json.loads((out / "unclip_pipeline.json").read_text())["components"]
  assert summary["prior"] == summary["super_res_last"] == "skipped (absent)"
  assert "has no prior/; skipped" in caplog.text
  assert (out / "decoder" / "condition" / "params").is_dir()

  shutil.copytree(src / "super_res_last", partial / "super_res_last")
  (partial / "super_res_last" / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"super_res_last/.*not valid JSON"):
    diffusers_unclip.convert_unclip_pipeline(partial, tmp_path / "out2")
  assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2*"))

  (partial / "model_index.json").unlink()
  with pytest.raises(FileNotFoundError, match="model_index.json"):
    diffusers_unclip.convert_unclip_pipeline(partial, tmp_path / "out3")


def test_a_condition_that_differs_from_cond_is_refused(converted):
  config = demo.get_config()
  snippet = {}
  exec((converted / "decoder" / "config_snippet.py").read_text(), snippet)  # noqa: S102
  snippet["apply"](config)
  config.cond.extra_tokens = 2
  with pytest.raises(ValueError, match=r"condition/ does not match cond.*extra_tokens"):
    init_from.initial_params(videofusion_config(config), config.train, ema=None)


def _rngs():
  return nnx.Rngs(0)


def _module_with(module, updates, part):
  state = nnx.state(module, nnx.Param)
  flat = {k[1:]: v for k, v in updates.items() if k[0] == part}
  assert {tuple(p) for p, _ in nnx.to_flat_state(state)} == set(flat)
  nnx.replace_by_pure_dict(state, _nest(flat))
  nnx.update(module, state)
  return module


def _nest(flat):
  out = {}
  for path, value in flat.items():
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = jnp.asarray(value)
  return out


def test_condition_config_validation_names_fields():
  with pytest.raises(ValueError, match="cond.kind='unclip' needs cond.time_embed_dim"):
    ConditionConfig(kind="unclip", embed_dim=12, text_dim=12).validate()
  with pytest.raises(ValueError, match="cond.context_dim / cond.time_embed_dim are for"):
    ConditionConfig(kind="image_embed", time_embed_dim=8).validate()
