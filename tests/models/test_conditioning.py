"""Conditioning: class ids and CLIP image embeddings into both generators, condition
dropout with learned nulls, and classifier-free guidance in one batched call."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import demo
from videofusion_jax import diffusion
from videofusion_jax.data.conditions import condition_inputs
from videofusion_jax.models import presets
from videofusion_jax.models.conditioning import ConditionConfig
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling.conditions import sample_conditions
from videofusion_jax.sampling.generate import model_eps_fn

SCHEDULE = diffusion.make_schedule("cosine", 1000)
B, N, H, C = 2, 4, 16, 3
CLASS = ConditionConfig(kind="class", num_classes=3, embed_dim=32, extra_tokens=2)


@pytest.fixture(scope="module")
def model():
  return VideoFusion(dataclasses.replace(presets.tiny(), cond=CLASS), rngs=nnx.Rngs(0))


def _video():
  return jax.random.normal(jax.random.key(0), (B, N, H, H, C))


def test_both_generators_take_the_condition_as_vector_and_tokens(model):
  for unet in (model.base, model.residual):
    cfg = unet.config
    assert (cfg.class_embed_type, cfg.class_embed_input_dim, cfg.cross_attention_dim) == (
      "projection",
      32,
      32,
    )
  assert model.condition.class_table.embedding[...].shape == (4, 32)  # + the null class


def test_class_changes_the_prediction_and_dropped_clips_ignore_it(model):
  t = jnp.array([300, 700])
  z = _video()
  eps = lambda ids, drop: (
    model(
      z, t, SCHEDULE.alphas_cumprod, cond={"class_id": jnp.array(ids), "drop": jnp.array(drop)}
    ).eps
  )
  a, b = eps([0, 1], [False, False]), eps([2, 2], [False, False])
  assert float(jnp.abs(a - b).min(axis=(1, 2, 3, 4)).min()) > 0  # every clip, every frame
  np.testing.assert_array_equal(eps([0, 1], [True, True]), eps([2, 2], [True, True]))


def test_guidance_scales_1_and_0_are_the_branches_in_one_call_per_step(model):
  t = jnp.array([300, 700])
  z = _video()
  cond = {"class_id": jnp.array([0, 2])}
  direct = lambda drop: (
    model(z, t, SCHEDULE.alphas_cumprod, cond=dict(cond, drop=jnp.array(drop))).eps
  )
  calls = []

  class Counting:  # the sampler sees only `condition` and the call
    condition = model.condition

    def __call__(self, *args, **kwargs):
      calls.append(kwargs["cond"]["class_id"].shape[0])
      return model(*args, **kwargs)

  guided = lambda scale: model_eps_fn(
    Counting(), SCHEDULE, with_variance=False, cond=cond, guidance_scale=scale
  )(z, t)
  np.testing.assert_allclose(guided(1.0), direct([False, False]), atol=1e-6)
  uncond = guided(0.0)
  np.testing.assert_allclose(uncond, direct([True, True]), atol=1e-5)
  three = guided(3.0)
  np.testing.assert_allclose(three, uncond + 3.0 * (direct([False, False]) - uncond), atol=1e-4)
  assert calls == [B, 2 * B, 2 * B]  # scale 1: one plain call; else one doubled call


def test_a_conditioned_model_without_a_condition_is_an_error(model):
  with pytest.raises(
    ValueError,
    match=r"conditioned \(cond.kind='class'\); pass cond with "
    r"\['class_id'\]",
  ):
    model(_video(), jnp.array([1, 2]), SCHEDULE.alphas_cumprod)


def test_image_embedding_condition_uses_a_learned_null_vector():
  cfg = ConditionConfig(kind="image_embed", embed_dim=16, extra_tokens=0, text_dim=8)
  vf = dataclasses.replace(presets.tiny(), cond=cfg)
  model = VideoFusion(vf, rngs=nnx.Rngs(1))
  assert model.base.config.cross_attention_dim == 16  # text tokens only
  embed = jax.random.normal(jax.random.key(2), (B, 16))
  text = jax.random.normal(jax.random.key(3), (B, 5, 8))
  out = model.condition(
    {"image_embed": embed, "text_hidden": text, "drop": jnp.array([False, True])}
  )
  np.testing.assert_array_equal(out["class_labels"][0], embed[0])
  np.testing.assert_array_equal(out["class_labels"][1], model.condition.null_embed[...])
  assert out["context"].shape == (B, 5, 16) and not jnp.any(out["context"][1])
  with pytest.raises(
    ValueError,
    match=r"image_embed'\] has shape \(2, 7\); expected "
    r"\(B, cond.embed_dim=16\)",
  ):
    model.condition({"image_embed": jnp.zeros((B, 7)), "text_hidden": text})


@pytest.mark.parametrize(
  "change, match",
  [
    (dict(kind="text"), r"cond.kind='text'; expected one of"),
    (dict(num_classes=0), r"cond.num_classes=0; cond.kind='class' needs >= 1"),
    (dict(kind="none", text_dim=8), r"text_dim is set but cond.kind='none'"),
  ],
)
def test_bad_condition_settings_are_named(change, match):
  with pytest.raises(ValueError, match=match):
    dataclasses.replace(CLASS, **change).validate()


def test_batches_take_class_ids_from_labels_and_reject_bad_ones():
  batch = {"video": np.zeros((2, 4, 8, 8, 3)), "label": np.array([0, 2])}
  out = condition_inputs(batch, CLASS)
  np.testing.assert_array_equal(out["cond"]["class_id"], [0, 2])
  with pytest.raises(ValueError, match=r"data label 3 is outside \[0, cond.num_classes=3\)"):
    condition_inputs(dict(batch, label=np.array([3, 0])), CLASS)
  with pytest.raises(ValueError, match=r"needs the data entry 'image_embed'.*clip_cache"):
    condition_inputs(batch, ConditionConfig(kind="image_embed"))
  assert "cond" not in condition_inputs(batch, ConditionConfig())


def test_sample_conditions_cycle_classes_or_take_one(tmp_path):
  config = demo.get_config()
  np.testing.assert_array_equal(sample_conditions(config, CLASS, 5)["class_id"], [0, 1, 2, 0, 1])
  config.sample.class_id = 2
  np.testing.assert_array_equal(sample_conditions(config, CLASS, 2)["class_id"], [2, 2])
  config.sample.class_id = 3
  with pytest.raises(
    ValueError,
    match=r"sample.class_id 3 is outside \[0, "
    r"cond.num_classes=3\)",
  ):
    sample_conditions(config, CLASS, 2)
  assert sample_conditions(config, ConditionConfig(), 2) is None
  image = ConditionConfig(kind="image_embed", embed_dim=4)
  np.savez(tmp_path / "e.npz", image_embeds=np.eye(4, dtype=np.float32)[:3])
  config.sample.image_embeds = str(tmp_path / "e.npz")
  np.testing.assert_array_equal(sample_conditions(config, image, 4)["image_embed"][3], [1, 0, 0, 0])
  config.sample.image_embeds = str(tmp_path / "missing.npz")
  with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
    sample_conditions(config, image, 4)
