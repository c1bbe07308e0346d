"""How a model runs, not what it computes: the execution knobs every model config has.

VideoFusion, VDM* and SuperRes share `dtype`, `param_dtype`, `remat`, `remat_policy`
and `attention` (VideoFusion adds `residual_chunks`). They change speed and memory
only, so a checkpoint loads whatever they are set to (`checkpoint.RUNTIME_FIELDS`).
"""

from __future__ import annotations

import jax
from flax import nnx

from videofusion_jax.models.attention import check_attention_implementation
from videofusion_jax.models.layers import cast_floats

DTYPES = ("float32", "bfloat16")  # float16 would need loss scaling
EXECUTION_FIELDS = ("dtype", "param_dtype", "remat", "remat_policy", "attention")
VIDEOFUSION_EXECUTION_FIELDS = (*EXECUTION_FIELDS, "residual_chunks")


def check_execution_knobs(config) -> None:
  """Refuse an unknown dtype, remat policy or attention implementation, by field name."""
  for field in ("dtype", "param_dtype"):
    if getattr(config, field) not in DTYPES:
      raise ValueError(f"model.{field}={getattr(config, field)!r}; expected one of {DTYPES}")
  if not hasattr(jax.checkpoint_policies, config.remat_policy):
    known = sorted(n for n in dir(jax.checkpoint_policies) if n.endswith("saveable"))
    raise ValueError(
      f"model.remat_policy={config.remat_policy!r}; expected a "
      f"jax.checkpoint_policies name such as {known}"
    )
  check_attention_implementation(config.attention)


def remat_policy(config) -> str | None:
  """The U-Nets' `remat_policy` argument: the policy name when `remat` is on."""
  return config.remat_policy if config.remat else None


class MixedPrecision:
  """For a model whose `config` has `dtype` and `param_dtype` (VideoFusion, VDM*,
  SuperRes): parameters stored in `param_dtype`, computed in `dtype`."""

  def store_params_in_param_dtype(self) -> None:
    """Cast the freshly built float32 parameters to `config.param_dtype` (the EMA and
    the optimizer state then follow them)."""
    if self.config.param_dtype != "float32":
      nnx.update(self, cast_floats(nnx.state(self, nnx.Param), self.config.param_dtype))

  def in_compute_dtype(self):
    """This model, or a copy whose parameters are cast to `config.dtype` (gradients flow
    back to the stored parameters through the cast): mixed precision at one boundary."""
    if self.config.dtype == self.config.param_dtype:
      return self
    graphdef, params, rest = nnx.split(self, nnx.Param, ...)
    return nnx.merge(graphdef, cast_floats(params, self.config.dtype), rest)
