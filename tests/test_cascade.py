"""The SR stage trains through the ordinary loop on (low, high) pairs, and the cascade
CLI writes videos at both resolutions."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import demo, demo_class, demo_class_sr, demo_sr
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data import video_io
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.sources import make_source
from videofusion_jax.models.conditioning import ConditionConfig
from videofusion_jax.sampling.cascade import check_stages, superres_conditions
from videofusion_jax.training.loop import train

ROOT = Path(__file__).parents[1]


def tiny_sr_config():
  """8x8 -> 16x16, 4 frames: pairs with demo.py at --config.data.image_size=8."""
  config = demo_sr.get_config()
  config.data.num_frames = 4
  config.data.image_size = 16
  config.data.low_res_size = 8
  config.data.num_clips = 64
  config.train.num_steps = 2
  config.train.batch_size = 2
  config.train.log_every = 1
  config.sample.num_steps = 2
  return config


def test_pipeline_yields_low_high_pairs():
  config = tiny_sr_config()
  batch = next(iter(make_dataset(make_source(config.data, seed=0), global_batch_size=2, seed=0)))
  assert batch["video"].shape == (2, 4, 16, 16, 3)
  assert batch["cond"]["low_res"].shape == (2, 4, 8, 8, 3)
  # the condition is the target, downsampled: their means agree frame by frame
  np.testing.assert_allclose(
    batch["cond"]["low_res"].mean(axis=(2, 3)), batch["video"].mean(axis=(2, 3)), atol=0.05
  )


def test_stages_must_agree_on_frame_size():
  base = demo.get_config()
  with pytest.raises(ValueError, match="image_size=16 but the SR model takes data.low_res_size=8"):
    check_stages(base, tiny_sr_config())
  with pytest.raises(ValueError, match="model.kind='videofusion'; expected 'superres'"):
    check_stages(base, demo.get_config())


CLASSES = ConditionConfig(kind="class", num_classes=6, embed_dim=64, extra_tokens=0)


def test_sr_condition_is_each_base_videos_own():
  base = {"class_id": np.array([4, 1, 1]), "drop": np.array([False, True, False])}
  out = superres_conditions(demo_class.get_config(), CLASSES, base, 3)
  np.testing.assert_array_equal(out["class_id"], [4, 1, 1])
  np.testing.assert_array_equal(out["drop"], [False, True, False])  # empty prompt stays null


def test_sr_condition_falls_back_to_the_sample_section():
  config = demo_class.get_config()
  config.sample.class_id = 5
  # the base model is unconditioned, or conditioned on something the SR model does not read
  for base in (None, {"image_embed": np.zeros((3, 64), np.float32)}):
    np.testing.assert_array_equal(
      superres_conditions(config, CLASSES, base, 3)["class_id"], [5, 5, 5]
    )
  assert superres_conditions(config, ConditionConfig(), {"class_id": np.ones(3)}, 3) is None


def test_sr_condition_rejects_what_the_sr_model_cannot_take():
  config = demo_class.get_config()
  with pytest.raises(ValueError, match="base videos' class_id"):
    superres_conditions(config, CLASSES, {"class_id": np.array([0, 6])}, 2)
  embeds = ConditionConfig(kind="image_embed", embed_dim=32)
  with pytest.raises(ValueError, match=r"shape \(2, 64\); the SR model takes cond.embed_dim=32"):
    superres_conditions(config, embeds, {"image_embed": np.zeros((2, 64))}, 2)


@pytest.mark.slow  # a train() compile and two sampler compiles in a CLI process: ~80 s
def test_sr_trains_and_the_cascade_cli_writes_both_sizes(tmp_path):
  sr_dir, base_dir = tmp_path / "sr", tmp_path / "base"
  metrics = train(tiny_sr_config(), str(sr_dir))
  assert np.isfinite(metrics["loss"]) and Checkpoints(sr_dir).latest_step() == 2

  # No --superres_config: the SR config comes from its checkpoint; the base model has
  # no checkpoint, so it samples from fresh weights (allowed, with a warning).
  cmd = [
    sys.executable,
    "-m",
    "videofusion_jax.sample",
    "--config=configs/demo.py",
    f"--workdir={base_dir}",
    f"--superres_workdir={sr_dir}",
    "--num_videos=3",
    "--config.data.image_size=8",
    "--config.data.num_frames=4",
    "--config.sample.num_steps=2",
    "--config.sample.batch_size=2",
    "--config.sample.allow_untrained=True",
  ]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "wrote 3 videos" in out.stdout
  low = sorted((base_dir / "samples").glob("*.mp4"))
  high = sorted((base_dir / "samples_16").glob("*.mp4"))
  assert len(low) == len(high) == 3
  assert video_io.read_video(low[0]).shape == (4, 8, 8, 3)
  assert video_io.read_video(high[0]).shape == (4, 16, 16, 3)
  assert (base_dir / "samples_16" / "strip.png").is_file()


@pytest.mark.slow  # as above, with a class-conditioned pair and guidance in the SR stage
def test_class_conditioned_cascade_guides_the_sr_stage(tmp_path):
  sr_dir, base_dir = tmp_path / "sr", tmp_path / "base"
  config = tiny_sr_config()
  config.data.synthetic_labels = "colour"
  config.cond = demo_class_sr.get_config().cond
  config.train.cond_drop_prob = 0.5
  assert np.isfinite(train(config, str(sr_dir))["loss"])

  cmd = [
    sys.executable,
    "-m",
    "videofusion_jax.sample",
    "--config=configs/demo_class.py",
    f"--workdir={base_dir}",
    f"--superres_workdir={sr_dir}",
    "--num_videos=2",
    "--class_id=3",
    "--superres_guidance_scale=2.5",
    "--config.data.image_size=8",
    "--config.data.num_frames=4",
    "--config.sample.num_steps=2",
    "--config.sample.batch_size=2",
    "--config.sample.allow_untrained=True",
  ]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  high = sorted((base_dir / "samples_16").glob("*.mp4"))
  assert len(high) == 2 and video_io.read_video(high[0]).shape == (4, 16, 16, 3)
