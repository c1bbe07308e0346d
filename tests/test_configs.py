"""Layered configs build valid models; typos and bad values fail loudly by name."""

import json

import ml_collections
import pytest

from videofusion_jax.configs import base, demo
from videofusion_jax.models import presets
from videofusion_jax.models.from_config import videofusion_config


def test_base_config_is_the_papers_table8():
  vf = videofusion_config(base.get_config())
  assert vf.base.block_out_channels == presets.table8().base.block_out_channels
  assert vf.residual.block_out_channels == (128, 256, 384, 640)
  assert vf.lam == 0.5 and vf.objective == "eps"


def test_demo_overrides_only_sizes():
  vf = videofusion_config(demo.get_config())
  assert vf.base.block_out_channels == (32, 64)
  assert vf.residual_unet().in_channels == 6  # frame + centre frame


def test_demo_gpu_setting_trains_longer_the_same_checkpointable_model():
  from videofusion_jax.checkpoint import config_differences

  cpu, gpu = demo.get_config(), demo.get_config("gpu")
  assert cpu.train.num_steps == 800 and cpu.train.batch_size == 8  # README's CPU demo
  assert cpu.model.residual_context == "centre_frame" and cpu.sample.eta == 1.0
  assert (cpu.data.synthetic_motion, cpu.diffusion.lam) == ("colour", 0.25)
  assert gpu.train.num_steps * gpu.train.batch_size >= 50 * 800 * 8
  assert gpu.data.worker_count > 0  # one reader thread cannot feed a GPU step
  assert config_differences(json.loads(cpu.to_json()), gpu) == []  # runs/demo resumes
  assert demo.get_config("cpu").to_json() == cpu.to_json()
  assert demo.get_config("setting=gpu").to_json() == gpu.to_json()
  with pytest.raises(
    ValueError,
    match=r"configs/demo.py: setting='tpu'; expected one of "
    r"cpu\|gpu\|tiny",
  ):
    demo.get_config("tpu")


def test_mistyped_field_suggests_the_right_one():
  config = base.get_config()
  config.lock()
  with pytest.raises(AttributeError, match="Did you mean.*lam"):
    config.diffusion.lamm = 0.3


@pytest.mark.parametrize(
  "path,value,match",
  [
    (("diffusion", "lam"), 2.0, "lam=2.0"),
    (("diffusion", "objective"), "x", "objective"),
    (("model", "residual_context"), "video", "residual_context"),
  ],
)
def test_bad_values_are_named(path, value, match):
  config = base.get_config()
  config[path[0]][path[1]] = value
  with pytest.raises(ValueError, match=match):
    videofusion_config(config)


def test_unknown_and_derived_unet_fields_are_rejected():
  config = demo.get_config()
  config.model.base.widths = (1, 2)
  with pytest.raises(ValueError, match="model.base has unknown field.*widths"):
    videofusion_config(config)
  config = demo.get_config()
  config.model.residual.in_channels = 6
  with pytest.raises(ValueError, match="model.residual.in_channels is derived"):
    videofusion_config(config)


@pytest.mark.parametrize("name", ["ucf101", "sky_timelapse", "taichi", "weizmann"])
def test_dataset_configs_say_where_to_put_missing_data(name, tmp_path):
  import importlib

  from videofusion_jax.data.sources import make_source

  module = importlib.import_module(f"videofusion_jax.configs.{name}")
  config = module.get_config(str(tmp_path / "absent"))
  videofusion_config(config)  # the model part is valid
  with pytest.raises(FileNotFoundError, match="absent does not exist.*(Download|Get|Build)"):
    make_source(config.data, seed=0)


def test_model_kind_selects_the_network_and_unknown_kinds_are_named():
  from videofusion_jax.models.from_config import model_spec
  from videofusion_jax.models.videofusion import VideoFusion

  config = demo.get_config()
  assert model_spec(config).cls is VideoFusion
  config.model.kind = "vdm3"
  with pytest.raises(ValueError, match=r"model\.kind='vdm3'; expected one of"):
    model_spec(config)


def test_checkpoints_from_before_model_kind_stay_compatible():
  from videofusion_jax.checkpoint import config_differences

  config = demo.get_config()
  saved = json.loads(config.to_json())
  del saved["model"]["kind"]
  assert config_differences(saved, config) == []
  config.model.kind = "vdm"
  assert config_differences(saved, config) == ["model.kind: videofusion -> vdm"]


@pytest.mark.parametrize("fps", [0.0, -8.0])
def test_data_fps_must_be_positive(fps):
  from videofusion_jax.cli import ConfigError
  from videofusion_jax.training.config_checks import check_config

  config = demo.get_config()
  assert config.data.fps is None  # default: every data.frame_stride-th frame
  config.data.fps = 8  # an int from the command line is a float
  assert check_config(config) and config.data.fps == 8.0
  config.data.fps = fps
  with pytest.raises(ConfigError, match=rf"data.fps={fps}; expected > 0"):
    check_config(config)


def test_a_multi_process_run_refuses_a_workdir_the_hosts_do_not_share():
  from videofusion_jax.cli import ConfigError
  from videofusion_jax.training.config_checks import check_shared_workdir, check_train_fields

  t = demo.get_config().train
  for shared in ("gs://bucket/runs/w", "s3://bucket/w"):
    check_shared_workdir(shared, t, process_count=4)
  check_shared_workdir("/tmp/runs/w", t, process_count=1)  # one host: any path
  for local in ("/tmp/runs/w", "runs/w", "file:///tmp/runs/w"):
    with pytest.raises(
      ConfigError,
      match=rf"^--workdir={local} is a local path, but this "
      "run has 4 processes .*allow_local_workdir_multihost=True",
    ):
      check_shared_workdir(local, t, process_count=4)
  t.allow_local_workdir_multihost = True  # every host mounts it (NFS)
  check_shared_workdir("/nfs/runs/w", t, process_count=4)
  # A config file may build its own dict (the CLI's override already refuses "yes").
  loose = ml_collections.ConfigDict(dict(t.to_dict(), allow_local_workdir_multihost="yes"))
  with pytest.raises(
    ValueError, match="train.allow_local_workdir_multihost='yes'; expected True or False"
  ):
    check_train_fields(loose)
