"""Multi-head attention for every model, and which kernel computes it (`model.attention`).

Shapes are (B, T, C) with heads split off C; the softmax is in float32 (diffusers upcasts;
cuDNN's fused kernel keeps its softmax in float32 too). The choice of kernel is a
context (`attention_implementation`), set by each U-Net around its blocks, so the layers
deep inside need no argument for it.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from absl import logging

# How `multi_head_attention` computes (`model.attention`): "xla" (XLA's dot products and
# softmax, every backend), or "cudnn" (cuDNN's fused flash attention, which never writes
# the (heads, Tq, Tk) logits to memory: at 32x32 tokens that is 4 MiB per head and image
# in float32; on a CUDA GPU, for long sequences and the dtypes and shapes cuDNN takes,
# XLA elsewhere).
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn")
_ATTENTION = contextvars.ContextVar("attention_implementation", default="xla")
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
# Below this many keys the logits are small and XLA's batched products do well; cuDNN is
# kept for the long spatial sequences (16x16 and 32x32 tokens), not the temporal layers'
# 15-16 frames over B*H*W sequences.
CUDNN_MIN_KEYS = 256
_REFUSALS_LOGGED: set = set()


def check_attention_implementation(name: str, field: str = "model.attention") -> None:
  if name not in ATTENTION_IMPLEMENTATIONS:
    raise ValueError(f"{field}={name!r}; expected one of {ATTENTION_IMPLEMENTATIONS}")


@contextlib.contextmanager
def attention_implementation(name: str):
  """Inside, `multi_head_attention` computes with `name` (ATTENTION_IMPLEMENTATIONS)."""
  check_attention_implementation(name)
  token = _ATTENTION.set(name)
  try:
    yield
  finally:
    _ATTENTION.reset(token)


def _cudnn_refusal(q, k, bias) -> str | None:
  """Why cuDNN cannot take this call, checked before trying it; None if it may."""
  if jax.default_backend() != "gpu":
    return f"the {jax.default_backend()} backend has no cuDNN"
  if q.dtype not in _CUDNN_DTYPES:
    return f"{q.dtype} inputs (cuDNN takes bfloat16/float16: set model.dtype)"
  if k.shape[1] < CUDNN_MIN_KEYS:
    return f"{k.shape[1]} keys, fewer than CUDNN_MIN_KEYS={CUDNN_MIN_KEYS}"
  # What cuDNN refuses only when the gradient is taken (under remat, outside this call)
  # is decided here, the same in training and sampling: a bias with an odd sequence
  # length (the residual generator's 15 frames), or one broadcast over the queries (a
  # condition-token mask, (B, 1, 1, Tk)).
  if bias is not None and (q.shape[1] % 2 or k.shape[1] % 2):
    return f"a bias with odd sequence lengths {q.shape[1]}, {k.shape[1]}"
  if bias is not None and tuple(bias.shape[-2:]) != (q.shape[1], k.shape[1]):
    return f"a bias of shape {bias.shape} (cuDNN takes (..., {q.shape[1]}, {k.shape[1]}))"
  return None


def _log_refusal_once(q, k, reason: str) -> None:
  key = (q.shape, k.shape, reason)
  if key not in _REFUSALS_LOGGED:
    _REFUSALS_LOGGED.add(key)
    logging.info(
      "model.attention='cudnn': XLA attention for q %s, k %s: %s", q.shape, k.shape, reason
    )


def multi_head_attention(q, k, v, heads: int, bias=None):
  """(B, Tq, C), (B, Tk, C) x2 -> (B, Tq, C); softmax in float32 (diffusers upcasts;
  cuDNN's fused kernel keeps its softmax in float32 too)."""
  b, tq, c = q.shape
  split = lambda a: a.reshape(a.shape[0], a.shape[1], heads, c // heads)
  q, k, v = split(q), split(k), split(v)
  if _ATTENTION.get() == "cudnn":
    reason = _cudnn_refusal(q, k, bias)
    if reason is None:
      try:
        return jax.nn.dot_product_attention(q, k, v, bias=bias, implementation="cudnn").reshape(
          b, tq, c
        )
      except NotImplementedError as e:  # head dims and versions cuDNN does not support
        reason = str(e)
    _log_refusal_once(q, k, reason)
  return jax.nn.dot_product_attention(q, k, v, bias=bias).reshape(b, tq, c)
