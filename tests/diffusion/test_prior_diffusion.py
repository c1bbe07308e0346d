"""Prior diffusion over embedding vectors: oracle recovery, DDIM(eta=1) == DDPM, loss,
and guidance through `sample_image_embeds` (scale 1 = conditional, 0 = unconditional, one
model call per step for both branches)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.diffusion import prior_diffusion as pd
from videofusion_jax.models.prior import PriorConfig, PriorTransformer
from videofusion_jax.sampling.prior import sample_image_embeds

SCHEDULE = diffusion.make_schedule("cosine", 50)
X0 = jax.random.normal(jax.random.key(7), (4, 6))


def test_ddim_with_an_oracle_returns_x0():
  out = pd.ddim_sample(lambda z, t: X0, SCHEDULE, X0.shape, jax.random.key(0), num_steps=10)
  np.testing.assert_allclose(out, X0, atol=1e-5)


def test_ddpm_with_an_oracle_returns_x0():
  out = pd.ddpm_sample(lambda z, t: X0, SCHEDULE, X0.shape, jax.random.key(0))
  np.testing.assert_allclose(out, X0, atol=1e-5)


def test_ddim_eta_one_over_all_steps_is_ddpm():
  """Same posterior mean and variance, same step noise keys: the same samples."""
  fn = lambda z, t: 0.5 * z + 0.1 * t[:, None].astype(jnp.float32) / 50
  key = jax.random.key(3)
  ddim = pd.ddim_sample(fn, SCHEDULE, X0.shape, key, num_steps=50, eta=1.0)
  ddpm = pd.ddpm_sample(fn, SCHEDULE, X0.shape, key)
  np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)


def test_per_vector_keys_make_rows_independent_of_the_batch():
  fn = lambda z, t: 0.9 * z
  keys = jax.random.split(jax.random.key(1), 4)
  full = pd.ddim_sample(fn, SCHEDULE, X0.shape, keys, num_steps=5, eta=1.0)
  part = pd.ddim_sample(fn, SCHEDULE, (2, 6), keys[2:], num_steps=5, eta=1.0)
  np.testing.assert_allclose(full[2:], part, atol=1e-6)


def test_clip_range_bounds_the_x0_estimates():
  out = pd.ddim_sample(
    lambda z, t: 100.0 + 0 * z, SCHEDULE, X0.shape, jax.random.key(0), num_steps=5, clip_range=2.0
  )
  np.testing.assert_allclose(out, 2.0, atol=1e-5)


def test_x0_loss_is_zero_for_the_oracle_and_the_variance_for_the_mean():
  loss, per = pd.x0_loss(lambda z, t: X0, X0, jax.random.key(0), SCHEDULE)
  assert float(loss) == 0.0 and per.shape == (4,)
  x0 = jax.random.normal(jax.random.key(1), (4096, 8))
  loss, _ = pd.x0_loss(lambda z, t: jnp.zeros_like(z), x0, jax.random.key(0), SCHEDULE)
  assert abs(float(loss) - 1.0) < 0.05


def test_bad_shapes_are_named():
  with pytest.raises(ValueError, match=r"shape=\(2, 3, 4\)"):
    pd.ddim_sample(lambda z, t: z, SCHEDULE, (2, 3, 4), jax.random.key(0))
  with pytest.raises(ValueError, match="eta=-1"):
    pd.ddim_sample(lambda z, t: z, SCHEDULE, (2, 3), jax.random.key(0), eta=-1)


# --- guidance through the model ------------------------------------------------------
CONFIG = PriorConfig(
  num_attention_heads=2,
  attention_head_dim=8,
  num_layers=1,
  embedding_dim=6,
  num_embeddings=3,
  learned_null=True,
)


@pytest.fixture(scope="module")
def prior():
  return PriorTransformer(CONFIG, rngs=nnx.Rngs(0))


def _cond(b=2):
  rng = np.random.RandomState(0)
  return (
    rng.randn(b, 6).astype(np.float32),
    rng.randn(b, 3, 6).astype(np.float32),
    np.array([[1, 1, 0], [1, 0, 0]], bool)[:b],
  )


def test_guidance_identities(prior):
  text, hidden, mask = _cond()
  kw = dict(key=jax.random.key(0), schedule=SCHEDULE, num_steps=5)
  plain = sample_image_embeds(prior, text, hidden, mask, guidance_scale=None, **kw)
  one = sample_image_embeds(prior, text, hidden, mask, guidance_scale=1.0, **kw)
  np.testing.assert_array_equal(one, plain)
  # Scale 0: the unconditional (learned null) branch, whatever the text.
  zero = sample_image_embeds(prior, text, hidden, mask, guidance_scale=0.0, **kw)
  zero2 = sample_image_embeds(prior, text + 3.0, -hidden, mask, guidance_scale=0.0, **kw)
  np.testing.assert_allclose(zero, zero2, atol=1e-5)
  assert np.abs(np.asarray(zero - one)).max() > 1e-3
  # Scale 3 differs from both.
  three = sample_image_embeds(prior, text, hidden, mask, guidance_scale=3.0, **kw)
  assert np.abs(np.asarray(three - one)).max() > 1e-3


def test_guidance_is_one_batched_model_call_per_step(prior, monkeypatch):
  calls = []
  original = PriorTransformer.__call__

  def counting(self, x_t, *args, **kwargs):
    calls.append(x_t.shape)
    return original(self, x_t, *args, **kwargs)

  monkeypatch.setattr(PriorTransformer, "__call__", counting)
  text, hidden, mask = _cond()
  sample_image_embeds(
    prior,
    text,
    hidden,
    mask,
    key=jax.random.key(5),
    guidance_scale=2.5,
    schedule=SCHEDULE,
    num_steps=4,
  )
  assert calls == [(4, 6)]  # traced once inside the scan body, on the doubled batch


def test_empty_text_null_condition_is_required_without_a_learned_null():
  config = PriorConfig(**{**CONFIG.__dict__, "learned_null": False})
  model = PriorTransformer(config, rngs=nnx.Rngs(0))
  text, hidden, mask = _cond()
  with pytest.raises(ValueError, match="null_cond"):
    sample_image_embeds(
      model, text, hidden, mask, key=jax.random.key(0), guidance_scale=3.0, schedule=SCHEDULE
    )
  null = {
    "text_embeds": np.zeros(6, np.float32),
    "text_hidden": np.zeros((3, 6), np.float32),
    "text_mask": np.array([1, 1, 0], bool),
  }
  kw = dict(key=jax.random.key(0), schedule=SCHEDULE, num_steps=4, null_cond=null)
  zero = sample_image_embeds(model, text, hidden, mask, guidance_scale=0.0, **kw)
  # Scale 0 equals conditioning every row on the empty text.
  rows = sample_image_embeds(
    model,
    np.zeros((2, 6), np.float32),
    np.zeros((2, 3, 6), np.float32),
    np.array([[1, 1, 0]] * 2, bool),
    guidance_scale=1.0,
    **kw,
  )
  np.testing.assert_allclose(zero, rows, atol=1e-5)


class _FakeCLIP:
  """Tokenizer + text tower stand-ins with CLIP's interfaces (ids -> (hidden, embeds))."""

  eos_id = 9

  def __init__(self):
    table = np.random.RandomState(0).randn(10, 6).astype(np.float32)
    self.text = lambda ids: (jnp.asarray(table)[ids], jnp.asarray(table)[ids].mean(1))
    self.tokenizer = self

  def __call__(self, prompts):
    ids = np.zeros((len(prompts), 3), np.int32)
    for i, p in enumerate(prompts):
      words = [1 + len(w) % 8 for w in p.split()][:1]
      ids[i, : len(words) + 1] = words + [self.eos_id]
    return ids

  def require(self, part):
    return getattr(self, part)


def test_prompts_go_through_clip_then_the_prior(prior):
  from videofusion_jax.sampling.prior import encode_prompts, prompt_image_embeds

  clip = _FakeCLIP()
  cond, null = encode_prompts(clip, ["a cat", "horses"])
  np.testing.assert_array_equal(cond["text_mask"], [[1, 1, 0], [1, 1, 0]])
  np.testing.assert_array_equal(null["text_mask"], [1, 0, 0])  # "" = [eos]
  kw = dict(key=jax.random.key(2), schedule=SCHEDULE, num_steps=4)
  got = prompt_image_embeds(
    prior, SCHEDULE, clip, ["a cat", "  "], guidance_scale=2.0, key=kw["key"], num_steps=4
  )
  cond, _ = encode_prompts(clip, ["a cat", ""])
  want = sample_image_embeds(
    prior, cond["text_embeds"], cond["text_hidden"], cond["text_mask"], guidance_scale=2.0, **kw
  )
  np.testing.assert_allclose(got[0], want[0], atol=1e-5)
  # The empty prompt's row is the learned null's sample (guidance 0 for that row).
  uncond = sample_image_embeds(
    prior, cond["text_embeds"], cond["text_hidden"], cond["text_mask"], guidance_scale=0.0, **kw
  )
  np.testing.assert_allclose(got[1], uncond[1], atol=1e-5)
