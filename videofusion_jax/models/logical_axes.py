"""Logical axis names of every U-Net parameter, by layer role.

The U-Nets are built from four kinds of parameters (convolution and dense kernels,
their biases, embedding tables, norm scales), so their logical axes follow from the
layer's attribute name, as one table, instead of being threaded through every
constructor. Names come only from `embed`, `mlp` and `heads` (`parallel.LOGICAL_AXES`);
`parallel.py` maps them onto mesh axes with the config's rules.

Column/row pairs follow Megatron: the first layer of a pair splits its outputs
(`mlp` or `heads`), the second its inputs, so a tensor-parallel pair needs one
reduction. The same names apply to the optimizer moments, whose paths end with the
parameter's path.

Activations are pinned too (`constrain`), at the U-Net's block boundaries: batch over
the data axes, channels whole. Left to propagation, the partitioner may keep a
tensor-parallel layer's channel split past the layer and then pay an all-to-all at
every skip concatenation; pinned, each Megatron pair ends in one reduction. `constrain`
does nothing unless a sharded step or sampler is being traced (`parallel.py` enters
`activation_sharding` then), so single-device programs and tests are unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable, Sequence

import jax
from jax.sharding import PartitionSpec

# attribute name of the layer -> (input axis, output axis) of its kernel
_HEAD_PROJECTIONS = ("to_q", "to_k", "to_v", "add_k_proj", "add_v_proj")
_ROW_PARALLEL = ("conv2", "to_out", "linear_2")

LogicalAxes = tuple  # one name (or None: never sharded) per array dimension

# (logical axes, shape) -> a Sharding, while a sharded computation is being traced.
_ACTIVATION_SHARDING: contextvars.ContextVar[Callable | None] = contextvars.ContextVar(
  "activation_sharding", default=None
)
IMAGE_ACTIVATION: LogicalAxes = ("batch", None, None, None)  # (B, H, W, C), frames in B


@contextlib.contextmanager
def activation_sharding(sharding_of: Callable[[LogicalAxes, tuple], jax.sharding.Sharding]):
  """Within this context, `constrain` pins arrays to `sharding_of(logical, shape)`."""
  token = _ACTIVATION_SHARDING.set(sharding_of)
  try:
    yield
  finally:
    _ACTIVATION_SHARDING.reset(token)


def with_activation_sharding(fn: Callable, sharding_of: Callable | None) -> Callable:
  """`fn`, run (and so traced by `jax.jit`) inside `activation_sharding(sharding_of)`;
  `fn` itself for None."""
  if sharding_of is None:
    return fn

  @functools.wraps(fn)  # jit names the program after `fn`
  def pinned(*args, **kwargs):
    with activation_sharding(sharding_of):
      return fn(*args, **kwargs)

  return pinned


def constrain(x: jax.Array, logical: LogicalAxes = IMAGE_ACTIVATION) -> jax.Array:
  """`x` with its sharding pinned by its dimensions' logical names, when inside
  `activation_sharding`; `x` unchanged otherwise."""
  sharding_of = _ACTIVATION_SHARDING.get()
  if sharding_of is None:
    return x
  if len(logical) != x.ndim:
    raise ValueError(f"logical axes {logical} for an array of shape {x.shape}")
  return jax.lax.with_sharding_constraint(x, sharding_of(tuple(logical), x.shape))


def kernel_axes(layer: str) -> tuple[str, str]:
  """(input, output) logical axes of the kernel of the layer named `layer`."""
  if layer in _HEAD_PROJECTIONS:
    return "embed", "heads"
  if layer == "to_out":
    return "heads", "embed"
  if layer in _ROW_PARALLEL:
    return "mlp", "embed"
  return "embed", "mlp"


def param_axes(path: Sequence[str], ndim: int) -> LogicalAxes:
  """Logical axes of the array at `path` (attribute names, last = variable name).

  Kernels of convolutions `(kh, kw, in, out)`, temporal convolutions `(k, in, out)` and
  dense layers `(in, out)` shard their channel axes; biases follow the kernel's output;
  embedding tables shard their vectors; norm scales, scalars and relative-position
  biases stay replicated (they are small).
  """
  if ndim == 0 or len(path) < 2:
    return (None,) * ndim
  name, layer = path[-1], path[-2]
  if name == "kernel" and ndim >= 2:
    return (None,) * (ndim - 2) + kernel_axes(layer)
  if name == "bias" and ndim == 1 and "norm" not in layer:
    return (kernel_axes(layer)[1],)
  if name == "embedding" and ndim == 2 and layer != "rel_pos_bias":
    return (None, "embed")
  return (None,) * ndim


def _names(path) -> tuple[str, ...]:
  """Key path of a state leaf -> attribute names, without the trailing `.value`."""
  names = []
  for entry in path:
    key = getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", None)))
    if isinstance(entry, jax.tree_util.GetAttrKey) and entry.name == "value":
      continue
    names.append(str(key))
  return tuple(names)


def state_logical_axes(state):
  """The tree of logical `PartitionSpec`s (of names, not mesh axes) for a model or
  (model, optimizer) state, like `nnx.get_partition_spec` gives for annotated models.

  Works on concrete arrays and on `jax.eval_shape` results alike.
  """
  return jax.tree_util.tree_map_with_path(
    lambda path, x: PartitionSpec(*param_axes(_names(path), len(x.shape))), state
  )
