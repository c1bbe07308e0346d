"""The unCLIP prior: parity with diffusers' PriorTransformer, masks, null conditions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax.models.prior import PriorConfig, PriorStat, PriorTransformer

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from videofusion_jax.convert.diffusers_prior import (  # noqa: E402
  abstract_prior,
  convert_prior_state_dict,
  prior_config_from_diffusers,
  prior_param_table,
  prior_with_params,
)

TINY = dict(
  num_attention_heads=2,
  attention_head_dim=8,
  num_layers=2,
  embedding_dim=12,
  num_embeddings=5,
  additional_embeddings=4,
)
# Kandinsky-style options: input LayerNorms, gelu time MLP, distinct widths.
VARIANT = dict(
  TINY,
  norm_in_type="layer",
  embedding_proj_norm_type="layer",
  time_embed_act_fn="gelu",
  time_embed_dim=24,
  embedding_proj_dim=10,
)


def torch_prior(kwargs, seed=0):
  torch.manual_seed(seed)
  model = diffusers.PriorTransformer(**kwargs).eval()
  with torch.no_grad():  # zero-initialised tensors (positions, prd, stats) get values too
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


def converted(model):
  config = prior_config_from_diffusers(dict(model.config))
  sd = {k: v.numpy() for k, v in model.state_dict().items()}
  return prior_with_params(config, convert_prior_state_dict(sd, abstract_prior(config)))


def inputs(config, b=3, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(b, config.embedding_dim).astype(np.float32)
  t = np.array([0, 500, 999][:b])
  proj = rng.randn(b, config.proj_dim).astype(np.float32)
  hidden = rng.randn(b, config.num_embeddings, config.embedding_dim).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)[:b]
  return x, t, proj, hidden, mask


@pytest.mark.parametrize("kwargs", [TINY, VARIANT], ids=["karlo", "kandinsky_options"])
def test_parity_with_diffusers(kwargs):
  ref = torch_prior(kwargs)
  ours = converted(ref)
  x, t, proj, hidden, mask = inputs(ours.config)
  with torch.no_grad():
    want = ref(
      torch.from_numpy(x),
      torch.from_numpy(t),
      torch.from_numpy(proj),
      torch.from_numpy(hidden),
      torch.from_numpy(mask),
    ).predicted_image_embedding
    want_post = ref.post_process_latents(want).numpy()
  got = ours(*map(jnp.asarray, (x, t, proj, hidden, mask)))
  np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-5)
  # clip_mean/clip_std carried over: denormalise is diffusers' post_process_latents.
  np.testing.assert_allclose(np.asarray(ours.denormalise(got)), want_post, rtol=1e-4, atol=1e-5)


def test_key_map_covers_every_array_once():
  ref = torch_prior(TINY)
  abstract = abstract_prior(prior_config_from_diffusers(dict(ref.config)))
  table = prior_param_table(abstract)
  assert sorted(e.torch_key for e in table) == sorted(ref.state_dict())
  ours = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(abstract))}
  assert {e.path for e in table} == ours


def test_masked_tokens_and_the_future_do_not_matter():
  model = PriorTransformer(PriorConfig(**TINY), rngs=nnx.Rngs(0))
  x, t, proj, hidden, mask = map(jnp.asarray, inputs(model.config))
  out = model(x, t, proj, hidden, mask)
  # Text tokens the mask hides (row 0: tokens 3, 4) change nothing ...
  hidden2 = hidden.at[0, 3:].set(100.0)
  np.testing.assert_allclose(model(x, t, proj, hidden2, mask)[0], out[0], atol=1e-6)
  # ... visible ones do.
  hidden3 = hidden.at[0, 1].set(100.0)
  assert np.abs(np.asarray(model(x, t, proj, hidden3, mask)[0] - out[0])).max() > 1e-3
  # The mask is causal: a token's representation never sees later tokens, so the read-out
  # (last token) sees all, while changing x_t changes the output.
  assert np.abs(np.asarray(model(x + 1.0, t, proj, hidden, mask) - out)).max() > 1e-3


def test_learned_null_replaces_the_text_condition():
  model = PriorTransformer(PriorConfig(**TINY, learned_null=True), rngs=nnx.Rngs(0))
  x, t, proj, hidden, mask = map(jnp.asarray, inputs(model.config))
  drop = jnp.array([True, False, True])
  out = model(x, t, proj, hidden, mask, drop=drop)
  other = model(x, t, proj + 5.0, hidden - 3.0, ~mask.at[:, 0].set(False), drop=drop)
  np.testing.assert_allclose(out[0], other[0], atol=1e-6)  # dropped: text ignored
  np.testing.assert_allclose(out[2], other[2], atol=1e-6)
  assert np.abs(np.asarray(out[1] - other[1])).max() > 1e-3  # kept: text used
  np.testing.assert_allclose(out[1], model(x, t, proj, hidden, mask)[1], atol=1e-6)


def test_class_conditioning_and_null_class():
  config = PriorConfig(**dict(TINY, num_embeddings=0), encoder_hid_proj_type=None, num_classes=3)
  model = PriorTransformer(config, rngs=nnx.Rngs(0))
  x = jnp.ones((4, 12))
  t = jnp.full((4,), 10)
  out = model(x, t, class_labels=jnp.array([0, 1, 2, 0]))
  assert np.abs(np.asarray(out[0] - out[1])).max() > 1e-3
  np.testing.assert_allclose(out[0], out[3], atol=1e-6)
  null = model(x, t, class_labels=jnp.array([0, 1, 2, 0]), drop=jnp.ones(4, bool))
  np.testing.assert_allclose(null, jnp.broadcast_to(null[0], null.shape), atol=1e-6)
  np.testing.assert_allclose(
    null[0], model(x[:1], t[:1], class_labels=jnp.array([3]))[0], atol=1e-6
  )


def test_statistics_are_not_parameters():
  model = PriorTransformer(PriorConfig(**TINY), rngs=nnx.Rngs(0))
  params = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  stats = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(model, PriorStat))}
  assert stats == {("clip_mean",), ("clip_std",)} and not params & stats
  model.clip_mean[...] = jnp.full((1, 12), 2.0)
  model.clip_std[...] = jnp.full((1, 12), 4.0)
  e = jax.random.normal(jax.random.key(0), (3, 12))
  np.testing.assert_allclose(model.denormalise(model.normalise(e)), e, atol=1e-6)
  np.testing.assert_allclose(model.normalise(e), (e - 2.0) / 4.0, atol=1e-6)


@pytest.mark.parametrize(
  "field,value,match",
  [
    ("added_emb_type", None, "added_emb_type=None"),
    ("norm_in_type", "rms", "norm_in_type='rms'"),
    ("num_embeddings", 0, "num_embeddings=0"),
    ("time_embed_act_fn", "relu", "time_embed_act_fn='relu'"),
  ],
)
def test_bad_configs_are_named(field, value, match):
  with pytest.raises(ValueError, match=match):
    PriorConfig(**dict(TINY, **{field: value})).validate()
