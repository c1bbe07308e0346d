"""A conditioned SR model: the class (or CLIP embedding) reaches the U-Net next to the
augmentation level, dropped clips take the learned null, and the sampler guides it in
one doubled call per step, as it guides VideoFusion."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.models.conditioning import ConditionConfig
from videofusion_jax.models.superres import SuperRes, SuperResConfig
from videofusion_jax.models.unet import UNetConfig
from videofusion_jax.sampling.generate import model_eps_fn
from videofusion_jax.training.step import StepConfig, loss_fn

SCHEDULE = diffusion.make_schedule("cosine", 1000)
B, N, H, L, C = 2, 3, 16, 8, 3
T = jnp.array([10, 600])
CLASS = ConditionConfig(kind="class", num_classes=3, embed_dim=16, extra_tokens=2)


def tiny(**changes) -> SuperResConfig:
  unet = UNetConfig(
    block_out_channels=(16, 32),
    layers_per_block=1,
    attention_levels=(1,),
    attention_head_dim=16,
    norm_num_groups=8,
  )
  return dataclasses.replace(
    SuperResConfig(unet=unet, image_size=H, low_res_size=L, cond=CLASS), **changes
  )


@pytest.fixture(scope="module")
def model():
  return SuperRes(tiny(), rngs=nnx.Rngs(0))


def _normal(seed, shape):
  return jax.random.normal(jax.random.key(seed), shape)


def _cond(ids=(0, 2), drop=(False, False)):
  return {
    "low_res": jnp.tanh(_normal(1, (B, N, L, L, C))),
    "aug_noise": _normal(7, (B, N, L, L, C)),
    "class_id": jnp.array(ids),
    "drop": jnp.array(drop),
  }


def test_the_vector_joins_the_augmentation_embedding_and_tokens_are_the_context(model):
  unet = model.unet.config
  assert unet.class_embed_type == "projection"
  assert unet.class_embed_input_dim == 16 + 16  # level embedding (16 ch) + class vector
  assert unet.cross_attention_dim == 16  # the class's 2 extra tokens
  plain = tiny(
    cond=ConditionConfig(), aug_embedding=False, sample_aug_level=0.0, aug_max_level=0.0
  ).unet_config()
  assert plain.class_embed_type is None and plain.cross_attention_dim is None  # Karlo's


def test_the_class_changes_every_clip_and_dropped_clips_ignore_it(model):
  z = _normal(0, (B, N, H, H, C))
  eps = lambda ids, drop: model(z, T, SCHEDULE.alphas_cumprod, cond=_cond(ids, drop)).eps
  a, b = eps((0, 1), (False, False)), eps((2, 2), (False, False))
  assert float(jnp.abs(a - b).mean(axis=(1, 2, 3, 4)).min()) > 1e-4
  np.testing.assert_array_equal(eps((0, 1), (True, True)), eps((2, 2), (True, True)))
  # The low-res frames still matter to a dropped clip: only the class is nulled.
  low = dict(_cond((0, 1), (True, True)), low_res=jnp.zeros((B, N, L, L, C)))
  changed = model(z, T, SCHEDULE.alphas_cumprod, cond=low).eps
  assert float(jnp.abs(changed - eps((0, 1), (True, True))).mean()) > 1e-3


def test_guidance_is_one_doubled_call_with_the_same_low_res_frames(model):
  z = _normal(0, (B, N, H, H, C))
  cond = {k: v for k, v in _cond().items() if k != "drop"}
  direct = lambda drop: (
    model(z, T, SCHEDULE.alphas_cumprod, cond=dict(cond, drop=jnp.array(drop))).eps
  )
  calls = []

  class Counting:  # the sampler sees only `condition` and the call
    condition = model.condition

    def __call__(self, *args, **kwargs):
      c = kwargs["cond"]
      calls.append(c["class_id"].shape[0])
      half = c["low_res"].shape[0] // 2
      if half == B:  # the doubled batch: both halves see the same low-res frames
        np.testing.assert_array_equal(c["low_res"][:half], c["low_res"][half:])
      return model(*args, **kwargs)

  guided = lambda scale: model_eps_fn(
    Counting(), SCHEDULE, with_variance=False, cond=cond, guidance_scale=scale
  )(z, T)
  np.testing.assert_allclose(guided(1.0), direct([False, False]), atol=1e-6)
  uncond = guided(0.0)
  np.testing.assert_allclose(uncond, direct([True, True]), atol=1e-5)
  np.testing.assert_allclose(
    guided(3.0), uncond + 3.0 * (direct([False, False]) - uncond), atol=1e-4
  )
  assert calls == [B, 2 * B, 2 * B]


def test_the_train_step_drops_conditions_and_trains_the_null(model):
  video = jnp.tanh(_normal(3, (B, N, H, H, C)))
  cond = {"low_res": _cond()["low_res"], "class_id": jnp.array([0, 2])}
  config = StepConfig(lam=0.5, cond_drop_prob=0.999)  # every clip dropped
  grads = nnx.grad(lambda m: loss_fn(m, video, jax.random.key(0), SCHEDULE, config, cond)[0])(model)
  table = grads.condition.class_table.embedding[...]
  assert float(jnp.abs(table[3]).sum()) > 0  # the null row learns
  assert float(jnp.abs(table[:3]).sum()) == 0.0  # the real classes were all dropped


@pytest.mark.parametrize(
  "change,match",
  [
    (
      dict(cond=ConditionConfig(kind="unclip", text_dim=8, time_embed_dim=64)),
      "cond.kind='unclip' is not offered for the SR model",
    ),
    (dict(cond=ConditionConfig(kind="class", num_classes=0)), "cond.num_classes=0"),
  ],
)
def test_bad_condition_settings_are_named(change, match):
  with pytest.raises(ValueError, match=match):
    tiny(**change).validate()


def test_a_missing_or_unknown_condition_entry_is_named(model):
  z = _normal(0, (B, N, H, H, C))
  no_class = {k: v for k, v in _cond().items() if k != "class_id"}
  with pytest.raises(ValueError, match=r"condition lacks \['class_id'\]"):
    model(z, T, SCHEDULE.alphas_cumprod, cond=no_class)
  with pytest.raises(
    ValueError,
    match=r"unknown key\(s\) \['image_embed'\].*cond.kind="
    r"'class'",
  ):
    model(z, T, SCHEDULE.alphas_cumprod, cond=dict(_cond(), image_embed=jnp.zeros((B, 16))))
