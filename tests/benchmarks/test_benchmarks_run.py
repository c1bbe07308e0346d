"""The Table 4 benchmark runs at a tiny size and reports sane
numbers (they are scripts, not tests, so this keeps them from rotting)."""

import json

import numpy as np
import pytest

from benchmarks import table4


@pytest.mark.flow  # the Table 4 benchmark as its user runs it: make test-flows
def test_table4_measures_both_models_with_one_sampler_compile_each():
  setup = table4.Setup(preset="micro", batch=1, frames=4, image_size=16)
  result = table4.run(setup, steps=20, sampler_steps=3, sampler_calls=1)
  text = table4.format_table(result)
  assert "videofusion" in text and "vdm" in text and "paper 0.42x" in text
  parsed = json.loads(json.dumps(result))  # what the TABLE4_JSON line carries
  assert parsed["commit"] and parsed["device"] in text  # RESULTS.md entries need both
  r = parsed["ratios"]
  rows = parsed["rows"]
  assert r["sampler_latency_ratio"] == pytest.approx(
    rows["videofusion"]["sampler_s"] / rows["vdm"]["sampler_s"]
  )
  for ratios in (r, parsed["ratios_2d"]):
    for key in ("latency_ratio", "memory_ratio", "flops_ratio", "sampler_latency_ratio"):
      assert np.isfinite(ratios[key]) and ratios[key] > 0, (key, ratios[key])
  # The paper's 2D residual generator is VideoFusion without its temporal layers: fewer
  # FLOPs and parameters than ours, the same base.
  assert parsed["ratios_2d"]["flops_ratio"] < r["flops_ratio"]
  assert rows["videofusion_2d"]["params"] < rows["videofusion"]["params"]
  assert "VideoFusion (paper's 2D residual) / VDM*" in text
  for name in table4.VARIANTS:
    row = parsed["rows"][name]
    assert row["sampler_compiles"] == 1 and row["sampler_jit_cache"] == 1
    assert row["flops"] > 0 and row["xla_total"] > 0 and row["step_s"] > 0
    assert row["host_overhead_s"] == pytest.approx(row["sampler_s"] - 3 * row["step_s"])
  # The pieces timed alone are the steps' own: VideoFusion's FLOPs are its two U-Nets',
  # VDM*'s spatial layers alone are part of its step.
  parts = parsed["parts"]
  assert set(parts) == {"vf_base", "vf_residual", "vdm_spatial"} and "vf_residual" in text
  vf_flops = parts["vf_base"]["flops"] + parts["vf_residual"]["flops"]
  assert vf_flops == pytest.approx(rows["videofusion"]["flops"], rel=0.05)
  assert 0.3 * rows["vdm"]["flops"] < parts["vdm_spatial"]["flops"] < rows["vdm"]["flops"]
  assert all(part["step_s"] > 0 for part in parts.values())
  # The micro VideoFusion has a base and a residual U-Net of the VDM*'s size: about
  # twice the parameters (VDM* has no frame embedding and fewer temporal layers).
  assert 1.5 < parsed["rows"]["videofusion"]["params"] / parsed["rows"]["vdm"]["params"] < 2.5
  # The profile finds each step's ops and names the layers that issued them.
  groups = {name: {c["group"] for c in p["cells"]} for name, p in parsed["profiles"].items()}
  assert {
    "base_unet/resnet_block",
    "residual_unet/resnet_block",
    "residual_unet/temporal_layer",
  } <= groups["videofusion"]
  assert {"resnet_block", "temporal_layer"} <= groups["vdm"]
  assert not any("base_unet" in g or "residual_unet" in g for g in groups["vdm"])
  assert not any("temporal_layer" in g for g in groups["videofusion_2d"])
  # Each profile is its step's own ops, per call: every op the trace gives the step is
  # named in its compiled text (none from another program) and the convolutions and matmuls
  # are among them. Not op_s against step_s: three traced calls on a loaded CPU can take
  # several times the untraced median; test_op_profile holds op_s to one call's time.
  for name, p in parsed["profiles"].items():
    assert p["calls"] == 3 and p["op_s"] > 0 and p["unmatched_s"] == 0, (name, p)
    assert {"conv", "matmul"} <= {c["kind"] for c in p["cells"]}, (name, p["cells"])
  assert "videofusion step:" in text and "of the untraced step" in text
