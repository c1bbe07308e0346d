"""The train step's optimizer and EMA rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from videofusion_jax.training.optimizer import make_optimizer
from videofusion_jax.training.step import ema_decay_at, ema_update


def test_ema_warms_up_then_holds_the_configured_decay():
  np.testing.assert_allclose(float(ema_decay_at(0, 0.999)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(ema_decay_at(90, 0.999)), 91 / 100)
  assert float(ema_decay_at(10**6, 0.999)) == np.float32(0.999)
  ema = ema_update({"w": jnp.zeros(3)}, {"w": jnp.ones(3)}, 0.75)
  np.testing.assert_allclose(ema["w"], 0.25)


def _optim(**changes):
  c = ConfigDict(dict(lr=1e-2, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999,
                      eps=1e-8, weight_decay=0.0, grad_clip=0.0, base_lr_scale=0.1,
                      freeze_base=False))
  c.update(changes)
  return make_optimizer(c, total_steps=10)


def test_base_moves_less_or_not_at_all():
  params = {"base": {"w": jnp.ones(4)}, "residual": {"w": jnp.ones(4)}}
  grads = jax.tree.map(jnp.ones_like, params)
  for changes, ratio in (({}, 0.1), ({"freeze_base": True}, 0.0)):
    tx = _optim(**changes)
    updates, _ = tx.update(grads, tx.init(params), params)
    moved = optax.apply_updates(params, updates)
    d_base = float(jnp.abs(moved["base"]["w"] - 1).max())
    d_res = float(jnp.abs(moved["residual"]["w"] - 1).max())
    np.testing.assert_allclose(d_base, ratio * d_res, rtol=1e-5)
