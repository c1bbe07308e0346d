"""Mesh sizes, logical rules and the checkpoint's runtime fields: pure functions."""

import ml_collections
import pytest
from jax.sharding import AbstractMesh, PartitionSpec as P

from configs import base
from videofusion_jax import parallel
from videofusion_jax.checkpoint import config_differences
from videofusion_jax.models.logical_axes import param_axes

RULES = parallel.rules_from_config(base.get_config().mesh.rules)


def mesh_config(data, fsdp, tensor):
  return ml_collections.ConfigDict(dict(data=data, fsdp=fsdp, tensor=tensor))


def test_mesh_shape_fills_in_the_rest_and_names_bad_fields():
  assert parallel.mesh_shape(mesh_config(-1, 4, 1), 32) == (8, 4, 1)
  assert parallel.mesh_shape(mesh_config(2, -1, 2), 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="mesh.data=3, mesh.fsdp=1, mesh.tensor=1 make a "
                                       "mesh of 3 devices; there are 8"):
    parallel.mesh_shape(mesh_config(3, 1, 1), 8)
  with pytest.raises(ValueError, match="at most one of them -1"):
    parallel.mesh_shape(mesh_config(-1, -1, 1), 8)
  with pytest.raises(ValueError, match="8 devices do not divide by 3"):
    parallel.mesh_shape(mesh_config(-1, 3, 1), 8)


def test_rules_name_unknown_axes():
  with pytest.raises(ValueError, match="logical axis 'channels'; known:"):
    parallel.rules_from_config([("channels", "fsdp")])
  with pytest.raises(ValueError, match="maps 'embed' to \\['model'\\]"):
    parallel.rules_from_config([("embed", "model")])
  mesh = AbstractMesh((2, 4, 2), parallel.MESH_AXES)
  with pytest.raises(ValueError, match="logical axis 'embed' has no rule"):
    parallel.to_mesh_spec(("embed",), (8,), {}, mesh)


def test_mesh_specs_shard_what_divides_and_never_reuse_an_axis():
  mesh = AbstractMesh((2, 4, 2), parallel.MESH_AXES)
  spec = lambda names, shape: parallel.to_mesh_spec(names, shape, RULES, mesh)
  assert spec((None, None, "embed", "mlp"), (3, 3, 64, 128)) == P(None, None, "fsdp", "tensor")
  assert spec((None, None, "embed", "mlp"), (3, 3, 3, 128)) == P(None, None, None, "tensor")
  assert spec(("batch",), (16,)) == P(("data", "fsdp"))
  assert spec(("batch",), (6,)) == P("data")        # 6 splits 2 ways, not 8
  assert spec(("batch",), (3,)) == P(None)
  assert spec(("embed", "embed"), (64, 64)) == P("fsdp", None)  # one axis, once


def test_layers_name_their_axes_megatron_style():
  assert param_axes(("resnets", "0", "conv1", "kernel"), 4) == (None, None, "embed", "mlp")
  assert param_axes(("resnets", "0", "conv2", "kernel"), 4) == (None, None, "mlp", "embed")
  assert param_axes(("attentions", "0", "to_k", "kernel"), 2) == ("embed", "heads")
  assert param_axes(("attentions", "0", "to_out", "kernel"), 2) == ("heads", "embed")
  assert param_axes(("attentions", "0", "to_out", "bias"), 1) == ("embed",)
  assert param_axes(("resnets", "0", "norm1", "bias"), 1) == (None,)
  assert param_axes(("temp_attention", "rel_pos_bias", "embedding"), 2) == (None, None)


def test_execution_knobs_do_not_make_a_checkpoint_incompatible():
  saved = base.get_config()
  now = base.get_config()
  now.model.dtype, now.model.remat, now.model.residual_chunks = "bfloat16", True, 4
  now.mesh.fsdp = 8
  assert config_differences(saved.to_dict(), now) == []
  now.model.base.layers_per_block = 3
  assert config_differences(saved.to_dict(), now) == ["model.base.layers_per_block: 2 -> 3"]
