"""benchmarks/op_profile.py: XLA ops attributed to the layer that issued them and to what
they compute, from the compiled module's text and a profiler trace."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import pytest

from benchmarks import op_profile


def _layers(x, w):
  with jax.named_scope("resnet_block"):
    h = jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
  with jax.named_scope("spatial_attention"):
    tokens = jnp.tanh(x).reshape(-1, x.shape[-1])
    attn = jax.nn.softmax(tokens @ tokens.T, axis=-1) @ tokens
  return h, attn


@pytest.mark.parametrize(
  "op_name, group",
  [
    (
      "jit(step)/residual_unet/checkpoint/resnet_block/conv_general_dilated",
      "residual_unet/resnet_block",
    ),
    ("jit(step)/jvp(base_unet)/spatial_attention/dot_general", "base_unet/spatial_attention"),
    ("jit(step)/residual_unet/temporal_layer/reduce_sum", "residual_unet/temporal_layer"),
    ("jit(step)/base_unet/add", "base_unet/other"),
    ("jit(step)/mul", "other"),
    ("jit(step)/my_resnet_block2/mul", "other"),  # a name containing a scope is not it
    ("", "other"),
  ],
)
def test_scope_group_names_the_generator_and_layer(op_name, group):
  assert op_profile.scope_group(op_name) == group


def test_parse_hlo_classifies_ops_and_keeps_their_layer():
  x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 16))
  ops = op_profile.parse_hlo(jax.jit(_layers).lower(x, w).compile().as_text())
  found = {(op.kind, op_profile.scope_group(op.op_name)) for op in ops.values()}
  assert ("conv", "resnet_block") in found
  assert ("matmul", "spatial_attention") in found
  assert ("reduce", "spatial_attention") in found  # the softmax's max and sum
  assert "conv" not in {k for k, g in found if g == "spatial_attention"}


_GPU_MODULE = """HloModule jit_step, entry_computation_layout={(bf16[8,64]{1,0})->bf16[8,64]{1,0}}

%fused_computation (param_0: bf16[8,64]) -> bf16[8,64] {
  %param_0 = bf16[8,64]{1,0} parameter(0)
  ROOT %cc = (bf16[8,64]{1,0}, u8[0]{0}) custom-call(%param_0), custom_call_target="__cudnn$fmhaSoftmax", metadata={op_name="jit(step)/residual_unet/spatial_attention/dot_product_attention"}
}

%triton_gemm_computation (p0: bf16[8,64], p1: bf16[64,64]) -> bf16[8,64] {
  %p0 = bf16[8,64]{1,0} parameter(0)
  %p1 = bf16[64,64]{1,0} parameter(1)
  ROOT %dot.3 = bf16[8,64]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(step)/base_unet/resnet_block/dot_general"}
}

ENTRY %main (a: bf16[8,64]) -> bf16[8,64] {
  %a = bf16[8,64]{1,0} parameter(0), metadata={op_name="a"}
  %conv.1 = (bf16[8,64]{1,0}, u8[0]{0}) custom-call(%a, %a), custom_call_target="__cudnn$convForward", metadata={op_name="jit(step)/base_unet/resnet_block/conv_general_dilated"}
  %gte = bf16[8,64]{1,0} get-tuple-element(%conv.1), index=0
  %gemm_fusion = bf16[8,64]{1,0} fusion(%gte, %a), kind=kCustom, calls=%triton_gemm_computation
  %cublas.2 = (bf16[8,64]{1,0}, s8[0]{0}) custom-call(%gemm_fusion, %a), custom_call_target="__cublas$lt$matmul"
  %attn_fusion = bf16[8,64]{1,0} fusion(%gemm_fusion), kind=kCustom, calls=%fused_computation
  %copy.7 = bf16[8,64]{0,1} copy(%attn_fusion)
  ROOT %add.1 = bf16[8,64]{1,0} add(%copy.7, %a), metadata={op_name="jit(step)/add"}
}
"""


def test_parse_hlo_reads_gpu_library_calls_by_their_target():
  """cuDNN convolutions and attention and cuBLAS GEMMs are custom calls on a GPU; ops
  XLA adds itself (a layout copy, a library call) take a named operand's layer."""
  ops = op_profile.parse_hlo(_GPU_MODULE)
  assert ops["conv.1"] == op_profile.HloOp(
    "conv", "jit(step)/base_unet/resnet_block/conv_general_dilated"
  )
  assert ops["gemm_fusion"].kind == "matmul"
  assert op_profile.scope_group(ops["gemm_fusion"].op_name) == "base_unet/resnet_block"
  assert ops["cublas.2"].kind == "matmul"
  assert ops["attn_fusion"].kind == "fused_attention"
  assert op_profile.scope_group(ops["attn_fusion"].op_name) == "residual_unet/spatial_attention"
  assert ops["copy.7"].kind == "layout"
  assert op_profile.scope_group(ops["copy.7"].op_name) == "residual_unet/spatial_attention"
  assert ops["add.1"] == op_profile.HloOp("elementwise", "jit(step)/add")
  assert op_profile._module_name(_GPU_MODULE) == "jit_step"


def _event(name, ns, **stats):
  return SimpleNamespace(name=name, duration_ns=ns, stats=list(stats.items()))


def _plane(name, lines):
  return SimpleNamespace(
    name=name, lines=[SimpleNamespace(name=n, events=e) for n, e in lines.items()]
  )


def test_device_op_seconds_reads_device_planes_and_skips_other_modules():
  gpu = [
    _plane(
      "/host:CPU", {"thunks": [_event("launch", 9e9, hlo_op="conv.1", hlo_module="jit_step")]}
    ),
    _plane(
      "/device:GPU:0",
      {
        "Stream #13(Compute)": [
          _event("cudnn_kernel_a", 2e6, hlo_op="conv.1", hlo_module="jit_step"),
          _event("cudnn_kernel_b", 1e6, hlo_op="conv.1", hlo_module="jit_step"),
          _event("other_program", 5e6, hlo_op="conv.1", hlo_module="jit_other"),
          _event("memset", 1e6),
        ]
      },
    ),
  ]
  assert op_profile.device_op_seconds(gpu, "jit_step", on_device=True) == {
    "conv.1": pytest.approx(3e-3)
  }
  # A GPU trace without device planes (no CUPTI) has only the host's launches: no ops.
  assert op_profile.device_op_seconds(gpu[:1], "jit_step", on_device=True) == {}
  tpu = [
    _plane(
      "/device:TPU:0",
      {
        "XLA Modules": [_event("jit_step(1)", 10e6)],
        "XLA Ops": [_event("fusion.4", 4e6), _event("convolution.2", 6e6)],
      },
    )
  ]
  assert op_profile.device_op_seconds(tpu, "jit_step", on_device=True) == {
    "fusion.4": pytest.approx(4e-3),
    "convolution.2": pytest.approx(6e-3),
  }


def test_profile_compiled_puts_a_convolution_heavy_step_in_its_conv_row():
  x, w = jnp.ones((4, 32, 32, 64)), jnp.ones((3, 3, 64, 64))
  compiled = jax.jit(lambda x, w: _layers(x, w)[0] * 2.0).lower(x, w).compile()
  profile = op_profile.profile_compiled(compiled, (x, w), calls=2)
  assert profile["calls"] == 2 and profile["op_s"] > 0 and profile["unmatched_s"] == 0
  assert sum(c["seconds"] for c in profile["cells"]) == pytest.approx(profile["op_s"])
  # The convolution's time is in the resnet_block row and its conv column, and nothing
  # else is. (Not its share of op_s: the multiply takes a tenth of the conv's time, but one
  # preemption on a loaded CPU can make it the longer op.)
  cells = {(c["group"], c["kind"]) for c in profile["cells"]}
  assert ("resnet_block", "conv") in cells
  assert {g for g, k in cells if k == "conv"} == {"resnet_block"}
  assert {k for g, k in cells if g == "resnet_block"} == {"conv"}
  text = "\n".join(op_profile.format_profile("step", profile, step_s=profile["op_s"]))
  assert "resnet_block" in text and "100% of the untraced step" in text


def test_op_seconds_are_per_call_and_ops_the_module_does_not_name_are_unmatched(monkeypatch):
  """The trace sums every traced call; a profile is one call's op time (table4 prints it
  beside the untraced step's), and an op its module does not name is counted apart."""
  x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 16))
  compiled = jax.jit(lambda x, w: _layers(x, w)[0] * 2.0).lower(x, w).compile()
  conv = next(
    name for name, op in op_profile.parse_hlo(compiled.as_text()).items() if op.kind == "conv"
  )
  monkeypatch.setattr(
    op_profile, "device_op_seconds", lambda *a: {conv: 0.006, "not_in_the_module.7": 0.003}
  )
  profile = op_profile.profile_compiled(compiled, (x, w), calls=3)
  assert profile["calls"] == 3
  assert profile["op_s"] == pytest.approx(0.003)
  assert profile["unmatched_s"] == pytest.approx(0.001)
  assert {(c["group"], c["kind"]): c["seconds"] for c in profile["cells"]} == pytest.approx(
    {("resnet_block", "conv"): 0.002, ("other", "other"): 0.001}
  )


def test_a_profile_without_ops_says_why_instead_of_failing(monkeypatch):
  """No op found (or a profiler error) comes back as an error the table prints: the
  benchmark's own numbers must survive a profiler that cannot see the device."""
  monkeypatch.setattr(op_profile, "device_op_seconds", lambda *a: {})
  compiled = jax.jit(lambda x: x * 2).lower(jnp.ones(8)).compile()
  profile = op_profile.profile_compiled(compiled, (jnp.ones(8),), calls=1)
  assert "no op of jit_" in profile["error"] and "/host:CPU" in profile["error"]
  assert op_profile.format_profile("step", profile) == [f"step: no profile: {profile['error']}"]


def test_profile_compiled_refuses_no_calls():
  compiled = jax.jit(lambda x: x + 1).lower(jnp.ones(3)).compile()
  with pytest.raises(ValueError, match="calls=0"):
    op_profile.profile_compiled(compiled, (jnp.ones(3),), calls=0)


def test_format_profile_says_when_no_op_names_a_layer():
  """A persistent compile cache keys executables without op names, so one compiled from
  code before the named scopes is reused: the table says why it has no layer rows."""
  profile = {
    "op_s": 0.002,
    "layer_names": False,
    "cells": [{"group": "other", "kind": "conv", "seconds": 0.002}],
  }
  text = "\n".join(op_profile.format_profile("step", profile))
  assert "JAX_COMPILATION_CACHE_DIR" in text and "other" in text
