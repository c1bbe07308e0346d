"""Mesh sizes, logical rules and the checkpoint's runtime fields: pure functions."""

import ml_collections
import numpy as np
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

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
  with pytest.raises(
    ValueError,
    match="mesh.data=3, mesh.fsdp=1, mesh.tensor=1 make a mesh of 3 devices; there are 8",
  ):
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
  assert spec(("batch",), (6,)) == P("data")  # 6 splits 2 ways, not 8
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


def test_collectives_are_counted_from_partitioned_hlo():
  from videofusion_jax.tools.collectives import collectives

  hlo = "\n".join(
    [  # lines of a compiled 8-device train step (metadata shortened)
      "  %all-to-all.64 = (f32[1,12,8]{2,1,0}, f32[1,12,8]{2,1,0}) all-to-all(%a, %b), "
      'channel_id=133, metadata={op_name="jit(train_step)/jvp()/concatenate"}',
      "  %all-reduce.3 = f32[3,3,64,32]{3,2,1,0} all-reduce(%c), to_apply=%add, "
      'metadata={op_name="jit(train_step)/transpose(jvp())/conv_general_dilated"}',
      "  %all-gather-start = (f32[16]{0}, f32[64]{0}) all-gather-start(%d), dimensions={0}",
      "  %all-gather-done = f32[64]{0} all-gather-done(%all-gather-start)",
      "  %fusion.2 = f32[8,8]{1,0} fusion(%e), kind=kLoop, calls=%all-reduce_fused",
    ]
  )
  sent = collectives(hlo)
  assert sent.count_by_kind() == {"all-to-all": 1, "all-reduce": 1, "all-gather": 1}
  assert sent.elements_by_kind() == {
    "all-to-all": 192,
    "all-reduce": 3 * 3 * 64 * 32,
    "all-gather": 16 + 64,
  }  # async: operand listed too
  assert sent.largest("all-to-all") == 192 and sent.largest("reduce-scatter") == 0
  assert [op.op_name.rsplit("/", 1)[-1] for op in sent.ops] == [
    "concatenate",
    "conv_general_dilated",
    "",
  ]  # the JAX op each came from


def _devices(n, per_group, kind):
  from types import SimpleNamespace

  # TPU chips carry their slice and their (x, y, z) place in it (2 x 2 chips a slice)
  extra = (
    (
      lambda i: {
        "slice_index": i // per_group,
        "core_on_chip": 0,
        "coords": (i % 2, (i % per_group) // 2, 0),
      }
    )
    if kind == "tpu"
    else (lambda i: {})
  )
  return [
    SimpleNamespace(id=i, process_index=i // per_group, platform=kind, device_kind=kind, **extra(i))
    for i in range(n)
  ]


# TPU slices by slice_index; GPU nodes by process: one process a node (4 GPUs each), or
# one a GPU (SLURM's one task per GPU, ranks node by node)
@pytest.mark.parametrize("kind,per_process", [("tpu", 4), ("gpu", 4), ("gpu", 1)])
def test_multi_slice_grid_keeps_fsdp_and_tensor_inside_a_slice(kind, per_process):
  devices = _devices(8, per_process, kind)
  node = lambda d: d.id // 4
  grid = parallel.multi_slice_grid((4, 2, 1), 2, devices[::-1])  # any order in
  assert grid.shape == (4, 2, 1) and {d.id for d in grid.ravel()} == set(range(8))
  np.testing.assert_array_equal(
    np.vectorize(node)(grid)[:, :, 0], [[0, 0], [0, 0], [1, 1], [1, 1]]
  )  # data spans both


def test_multi_slice_grid_names_what_does_not_fit():
  with pytest.raises(ValueError, match=r"mesh.data=3 must be a multiple of mesh.num_slices=2"):
    parallel.multi_slice_grid((3, 1, 1), 2, _devices(3, 3, "tpu"))
  with pytest.raises(ValueError, match=r"num_slices=2, but the 8 devices belong to 1 processes"):
    parallel.multi_slice_grid((2, 4, 1), 2, _devices(8, 8, "gpu"))
  with pytest.raises(ValueError, match=r"num_slices=4, but the 8 devices are in 2 TPU slices"):
    parallel.multi_slice_grid((4, 2, 1), 4, _devices(8, 4, "tpu"))
