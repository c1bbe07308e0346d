"""Train -> checkpoint -> resume -> sample, on the built-in synthetic set."""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import demo
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data import video_io
from videofusion_jax.sampling import sample
from videofusion_jax.training.loop import train


def tiny_config(num_steps=4):
  config = demo.get_config()
  config.data.num_frames = 4
  config.data.num_clips = 64
  config.train.num_steps = num_steps
  config.train.batch_size = 2
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.sample.num_steps = 2
  config.sample.num_videos = 2
  config.sample.batch_size = 2
  return config


def _restore_all(workdir, step):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                   ema=ocp.args.StandardRestore()))
  mngr.close()
  return jax.tree.leaves(out["state"]), jax.tree.leaves(out["ema"])


def test_resume_is_bitwise_identical_and_samples_load_the_checkpoint(tmp_path):
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  train(tiny_config(4), str(straight))
  train(tiny_config(2), str(resumed))
  assert Checkpoints(resumed).latest_step() == 2
  train(tiny_config(4), str(resumed))  # resumes at 2: state, EMA and data position

  (state_a, ema_a), (state_b, ema_b) = _restore_all(straight, 4), _restore_all(resumed, 4)
  assert len(state_a) == len(state_b) > 0 and len(ema_a) == len(ema_b) > 0
  for a, b in zip(state_a + ema_a, state_b + ema_b):
    np.testing.assert_array_equal(a, b)
  lines = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [1, 2, 3, 4]
  assert {"loss", "loss_centre", "loss_residual", "lr", "steps_per_sec"} <= set(lines[0])
  resumed_lines = [json.loads(l) for l in (resumed / "metrics.jsonl").read_text().splitlines()]
  assert [l["loss"] for l in resumed_lines] == [l["loss"] for l in lines]  # same batches
  assert list((straight / "tensorboard").iterdir())

  paths = sample(tiny_config(4), str(straight))
  assert video_io.read_video(paths[0]).shape == (4, 16, 16, 3)


def test_incompatible_checkpoint_is_refused_by_field(tmp_path):
  train(tiny_config(2), str(tmp_path))
  config = tiny_config(4)
  config.model.base.block_out_channels = (32, 32)
  with pytest.raises(ValueError, match="model.base.block_out_channels: \\[32, 64\\] -> "
                                       "\\[32, 32\\]"):
    train(config, str(tmp_path))
  assert Checkpoints(tmp_path).latest_step() == 2  # nothing lost


def test_one_step_on_a_folder_of_real_video_files(tmp_path):
  from configs import folder
  frames = np.zeros((10, 24, 32, 3), np.uint8)
  for i in range(10):
    frames[i, 6:14, 2 + 2 * i:10 + 2 * i] = (30, 200, 90)
  for name in ("a", "b"):
    video_io.write_mp4(tmp_path / "videos" / "cls" / f"{name}.mp4", frames)
  config = folder.get_config(str(tmp_path / "videos"))
  for field in ("num_steps", "batch_size", "checkpoint_every"):
    config.train[field] = tiny_config().train[field]
  config.data.num_frames = 4
  config.train.num_steps = 1
  metrics = train(config, str(tmp_path / "run"))
  assert np.isfinite(metrics["loss"]) and Checkpoints(tmp_path / "run").latest_step() == 1


def test_missing_data_folder_fails_before_anything_is_written(tmp_path):
  from configs import folder
  config = folder.get_config(str(tmp_path / "absent"))
  with pytest.raises(FileNotFoundError, match="absent does not exist"):
    train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_checkpoint_killed_mid_save_is_never_resumed_from(tmp_path):
  train(tiny_config(2), str(tmp_path))
  # What a save killed before orbax's final rename leaves: a temporary step directory.
  partial = tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1700000000000000"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "half_written").write_bytes(b"\x00" * 10)
  assert Checkpoints(tmp_path).latest_step() == 2
  assert np.isfinite(train(tiny_config(3), str(tmp_path))["loss"])
  assert Checkpoints(tmp_path).latest_step() == 3
