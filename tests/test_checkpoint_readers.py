"""Reading a workdir (sampling, evaluation, diagnostics) never touches a save in progress:
an orbax manager opened for writing deletes unfinished saves' temporary folders, and a
reader that did so would break the training run saving at that moment (it did)."""

import jax.numpy as jnp
import ml_collections
import pytest

from configs import demo
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.sampling import cascade, generate
from videofusion_jax.training import prior_loop


def test_a_save_in_progress_survives_a_reader_opening_the_workdir(tmp_path):
  writer = Checkpoints(tmp_path)
  big = {"a": jnp.ones((2048, 2048))}  # 16 MiB: still being written when the reader opens
  writer.save(1, big, big, None, ml_collections.ConfigDict({"seed": 0}))
  reader = Checkpoints(tmp_path, read_only=True)
  assert reader.latest_step() in (None, 1)
  writer.wait()
  assert writer.latest_step() == 1
  writer.close()
  reader.close()


def test_sampling_opens_the_workdir_read_only_and_creates_nothing(tmp_path, monkeypatch):
  opened = []
  original = generate.Checkpoints

  def recording(workdir, **kwargs):
    opened.append(kwargs)
    return original(workdir, **kwargs)

  monkeypatch.setattr(generate, "Checkpoints", recording)
  config = demo.get_config()
  with pytest.raises(FileNotFoundError, match=f"no checkpoint in {tmp_path}/run/checkpoints"):
    generate.load_ema_params(model_spec(config), config, str(tmp_path / "run"))
  config.sample.allow_untrained = True
  generate.load_ema_params(model_spec(config), config, str(tmp_path / "run"))
  assert opened == [{"read_only": True}] * 2
  assert not (tmp_path / "run").exists()


def test_a_reader_in_a_with_block_closes_on_error_and_sees_the_finished_save(tmp_path):
  with Checkpoints(tmp_path) as writer:
    writer.save(
      1, {"a": jnp.ones((4,))}, {"a": jnp.ones((4,))}, None, ml_collections.ConfigDict({"seed": 0})
    )
  # Leaving the block waited for the save: a new reader finds it complete.
  with pytest.raises(RuntimeError, match="inside"):
    with Checkpoints(tmp_path, read_only=True) as reader:
      assert reader.latest_step() == 1
      raise RuntimeError("inside")


def test_latest_step_or_raise_names_the_folder_and_how_to_make_a_checkpoint(tmp_path):
  with Checkpoints(tmp_path, read_only=True) as empty:
    with pytest.raises(FileNotFoundError) as error:
      empty.latest_step_or_raise("train there first")
  assert str(error.value) == f"no checkpoint in {tmp_path}/checkpoints: train there first"
  with Checkpoints(tmp_path) as writer:
    writer.save(3, {"a": jnp.ones((4,))}, {"a": jnp.ones((4,))}, None, ml_collections.ConfigDict())
  with Checkpoints(tmp_path, read_only=True) as reader:
    assert reader.latest_step_or_raise("train there first") == 3


@pytest.mark.parametrize(
  "load, hint",
  [
    (cascade.superres_config_from_workdir, "or pass --superres_config"),
    (prior_loop.load_trained_prior, "videofusion_jax.train_prior --workdir="),
  ],
)
def test_the_loaders_refuse_a_workdir_without_a_checkpoint_in_one_line(tmp_path, load, hint):
  with pytest.raises(FileNotFoundError) as error:
    load(str(tmp_path))
  message = str(error.value)
  assert message.startswith(f"no checkpoint in {tmp_path}/checkpoints: ") and hint in message
  assert "\n" not in message
