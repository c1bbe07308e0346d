"""models/tracing.py: a traced model build skips JAX's equation walk for tracer error
messages, and JAX's own method is back afterwards."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax._src.interpreters import partial_eval

from configs import demo
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.models.tracing import quiet_tracer_errors


class CountingWalks:
  """Counts calls of the method the context switches off (JAX's, wrapped)."""

  def __init__(self):
    self.calls = 0
    self.original = partial_eval.DynamicJaxprTracer._origin_msg

  def __enter__(self):
    original = self.original

    def counted(tracer):
      self.calls += 1
      return original(tracer)

    partial_eval.DynamicJaxprTracer._origin_msg = counted
    return self

  def __exit__(self, *exc):
    partial_eval.DynamicJaxprTracer._origin_msg = self.original


def test_a_traced_build_walks_no_equations_and_jax_gets_its_method_back():
  spec = model_spec(demo.get_config())
  with CountingWalks() as plain:
    nnx.eval_shape(lambda: spec.cls(spec.config, rngs=nnx.Rngs(0)))  # flax as it is
  assert plain.calls > 100  # one walk (or two) per random draw of the init
  with CountingWalks() as quiet:
    abstract = nnx.eval_shape(lambda: spec.build(0))  # through quiet_tracer_errors
    method_inside_after = partial_eval.DynamicJaxprTracer._origin_msg
  assert quiet.calls == 0
  assert method_inside_after.__name__ == "counted"  # restored to what was there
  same = nnx.eval_shape(lambda: spec.cls(spec.config, rngs=nnx.Rngs(0)))
  shapes = lambda m: jax.tree.map(lambda x: (x.shape, x.dtype), nnx.state(m))
  assert shapes(abstract) == shapes(same)


def test_tracer_errors_outside_keep_their_origin_and_nesting_restores_once():
  with quiet_tracer_errors():
    with quiet_tracer_errors():
      pass
    assert partial_eval.DynamicJaxprTracer._origin_msg("ignored") == ""
  with pytest.raises(jax.errors.ConcretizationTypeError, match="while tracing the function"):
    jax.jit(lambda x: float(jnp.sum(x)))(jnp.ones(3))
