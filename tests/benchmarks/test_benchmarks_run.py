"""The Table 4 and decomposition-study benchmarks run at a tiny size and report sane
numbers (they are scripts, not tests, so this keeps them from rotting)."""

import json

import numpy as np
import pytest

from benchmarks import decomposition_study, table4
from videofusion_jax.metrics.features import FeatureExtractor


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


def _standin(videos):
  """Cheap 'features': per-clip channel means and frame-difference energy."""
  v = np.asarray(videos, np.float32) / 255.0
  return np.concatenate(
    [
      v.mean(axis=(1, 2, 3)),
      np.abs(np.diff(v, axis=1)).mean(axis=(1, 2, 3)),
      v.std(axis=(1, 2, 3)),
    ],
    axis=1,
  )


def _micro_study():
  return decomposition_study.StudySettings(
    lams=(0.25,),
    seeds=(0, 1),
    train_steps=1,
    batch_size=2,
    num_frames=4,
    image_size=16,
    num_videos=3,
    num_real=4,
    sampler_steps=2,
  )


def _check_study(result, settings):
  fvds = [r["fvd"] for r in result["runs"]]
  assert len(fvds) == len(settings.seeds) and all(np.isfinite(v) and v >= 0 for v in fvds)
  row = result["summary"]["0.25"]
  assert row["mean"] == pytest.approx(np.mean(fvds))
  assert row["std"] == pytest.approx(np.std(fvds, ddof=1))
  assert "0.25" in decomposition_study.format_table(result)
  assert all(r["noise_mode"] == "decomposed" for r in result["runs"])
  # Synthetic shapes: each run also says whether its objects glide or jitter.
  assert all(
    set(r["object_motion"]) == {"speed", "path_speed", "straightness"} for r in result["runs"]
  )


@pytest.mark.slow  # two sampler runs (~16-35 s); make test is at 9m50s of its 10
def test_decomposition_study_samples_and_scores_each_seed(tmp_path, monkeypatch):
  """Everything but the training (the loop has its own tests, and its compile is the
  slow part): untrained weights are sampled, scored and summarised per lam."""
  calls = []

  def no_training(config, workdir):  # the untrained weights are then sampled, on purpose
    calls.append(config)
    config.sample.allow_untrained = True
    return {"loss": 1.0}

  monkeypatch.setattr(decomposition_study, "train", no_training)
  settings = _micro_study()
  extractor = FeatureExtractor("standin", _standin, batch_size=4)
  result = decomposition_study.run_study(settings, str(tmp_path), extractor)
  _check_study(result, settings)
  # Equal training compute: every run gets the same steps and batch; seeds differ.
  assert {(c.train.num_steps, c.train.batch_size) for c in calls} == {(1, 2)}
  assert [c.seed for c in calls] == [0, 1]
  assert decomposition_study.run_config(settings, 0.0, 0).diffusion.noise_mode == "standard"
  with pytest.raises(ValueError, match="num_real=1"):
    decomposition_study.StudySettings(num_real=1).validate()


@pytest.mark.slow
def test_decomposition_study_end_to_end_with_training(tmp_path):
  settings = _micro_study()
  extractor = FeatureExtractor("standin", _standin, batch_size=4)
  result = decomposition_study.run_study(settings, str(tmp_path), extractor)
  _check_study(result, settings)
  assert all(np.isfinite(r["final_loss"]) for r in result["runs"])
