"""Training on a TFDS dataset (BAIR through `tfds.testing.mock_data`, no TensorFlow): two
steps, a bitwise resume, and the parameter tables written at train start. The clips are
resized to the tiny config of test_train.py, so the train step's compiled shapes are
the ones that file compiles."""

import math
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from videofusion_jax.checkpoint import Checkpoints  # noqa: E402
from videofusion_jax.cli import BAD_INPUT, ConfigError  # noqa: E402
from videofusion_jax.configs import bair, demo  # noqa: E402
from videofusion_jax.training.loop import train  # noqa: E402


def bair_tiny_config(data_dir, num_steps=2):
  config = demo.get_config("setting=tiny")
  config.train.num_steps = num_steps
  config.data.update(
    {
      k: v
      for k, v in bair.get_config(data_dir).data.items()
      if k not in ("num_frames", "image_size")
    }
  )
  config.train.checkpoint_every = 1
  return config


def _restore(workdir, step):
  mngr = ocp.CheckpointManager(workdir / "checkpoints")
  out = mngr.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), ema=ocp.args.StandardRestore())
  )
  mngr.close()
  return jax.tree.leaves(out["state"]), jax.tree.leaves(out["ema"])


@pytest.mark.flow  # two train() runs on BAIR (~70 s on 2 cores): make test-flows
def test_two_steps_on_bair_resume_bitwise_and_write_the_parameter_tables(tmp_path):
  config = bair_tiny_config(str(tmp_path / "tfds"))
  assert config.data.source == "tfds" and config.data.random_start
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  with tfds.testing.mock_data(num_examples=6):
    metrics = train(config, str(straight))
    assert np.isfinite(metrics["loss"])
    assert Checkpoints(straight).all_steps() == [1, 2]
    # A run stopped after step 1 resumes state, EMA and data position.
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "2")
    train(config, str(resumed))
  (state_a, ema_a), (state_b, ema_b) = _restore(straight, 2), _restore(resumed, 2)
  assert len(state_a) == len(state_b) > 0 and len(ema_a) == len(ema_b) > 0
  for x, y in zip(state_a + ema_a, state_b + ema_b):
    np.testing.assert_array_equal(x, y)

  table = (straight / "parameters.txt").read_text()
  counts = {
    line.split(":")[0]: int(line.split()[1].replace(",", ""))
    for line in table.splitlines()
    if line.endswith(" parameters")
  }
  assert {"base", "residual", "model"} <= set(counts)
  assert counts["model"] == sum(v for k, v in counts.items() if k != "model")
  assert counts["model"] == sum(math.prod(x.shape) for x in ema_a)  # every parameter
  assert "| base/" not in table and "| conv_in/kernel" in table  # paths inside each part


def test_a_missing_tfds_data_dir_is_a_bad_input_before_anything_is_written(tmp_path):
  config = bair_tiny_config(str(tmp_path / "absent"))
  with pytest.raises(ConfigError, match="tfds build bair_robot_pushing_small") as raised:
    train(config, str(tmp_path / "run"))
  assert raised.value.exit_code == BAD_INPUT
  assert not (tmp_path / "run").exists()
