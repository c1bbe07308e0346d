"""The sampling path end to end: one compile per shape, decodable videos on disk."""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from configs import demo
from videofusion_jax import diffusion
from videofusion_jax.data import video_io
from videofusion_jax.models.from_config import videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling.generate import make_sample_fn, sample, sampler_config


def small_demo_config():
  config = demo.get_config()
  config.data.num_frames = 4
  config.sample.num_steps = 3
  config.sample.num_videos = 3
  config.sample.batch_size = 2
  config.sample.allow_untrained = True  # no checkpoint in these workdirs
  return config


def test_jitted_sampler_compiles_once_and_seeds_control_the_noise():
  config = small_demo_config()
  model = VideoFusion(videofusion_config(config), rngs=nnx.Rngs(0))
  schedule = diffusion.make_schedule("cosine", 1000)
  graphdef, state = nnx.split(model)
  shape = (2, 4, 16, 16, 3)
  fn = make_sample_fn(graphdef, shape, 0.5, sampler_config(config))
  key = jax.random.key
  a = fn(state, schedule, key(0), key(1))
  b = fn(state, schedule, key(0), key(1))
  c = fn(state, schedule, key(0), key(2))
  assert fn._cache_size() == 1
  np.testing.assert_array_equal(a, b)
  assert a.shape == shape and float(np.abs(a - c).max()) > 1e-3
  assert float(np.abs(a).max()) <= 1.0  # clip_x0 keeps outputs in range


def test_sample_cli_function_writes_decodable_videos(tmp_path):
  config = small_demo_config()
  paths = sample(config, str(tmp_path))
  mp4s = sorted(tmp_path.glob("samples/*.mp4"))
  assert len(mp4s) == 3 and len(list(tmp_path.glob("samples/*.gif"))) == 3
  for path in mp4s:
    video = video_io.read_video(path)
    assert video.shape == (4, 16, 16, 3)
  strip = paths[-1]
  assert strip.name == "strip.png" and strip.is_file()
  assert not list(tmp_path.glob("samples/.*"))  # no temporary files left behind


def test_video_io_round_trip_is_close():
  video = np.zeros((6, 16, 16, 3), np.uint8)
  for i in range(6):
    video[i, 4:10, i : i + 6] = (200, 60, 30)
  path = video_io.write_mp4("/tmp/vfj_roundtrip.mp4", video, fps=8)
  decoded = video_io.read_video(path)
  assert decoded.shape == video.shape
  assert np.abs(decoded.astype(int) - video).mean() < 4.0
  with pytest.raises(FileNotFoundError, match="missing.mp4"):
    video_io.read_video("/tmp/missing.mp4")


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_sample_cli_flags(tmp_path):
  import subprocess
  import sys
  from pathlib import Path

  root = Path(__file__).parents[1]
  cmd = [
    sys.executable,
    "-m",
    "videofusion_jax.sample",
    "--config=configs/demo.py",
    f"--workdir={tmp_path}",
    "--num_videos=2",
    "--base_seed=5",
    "--residual_seed=6",
    "--config.data.num_frames=4",
    "--config.sample.num_steps=2",
  ]
  refused = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
  assert refused.returncode != 0 and "sample.allow_untrained=True" in refused.stderr
  assert f"no checkpoint in {tmp_path}/checkpoints" in refused.stderr
  assert not (tmp_path / "samples").exists()  # nothing written for a workdir typo
  cmd.append("--config.sample.allow_untrained=True")
  out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "wrote 2 videos" in out.stdout
  assert out.stdout.splitlines()[0].endswith("; mode: videos"), out.stdout  # the default
  # The demo's data is synthetic: the samples' object motion, frame change and distance
  # to the centre are printed beside the data's (shapes gliding 0.75 px/frame).
  for who, speed in (("samples", r"[\d.]+"), ("data", r"0\.7\d")):
    assert re.search(
      rf"{who}: +objects move {speed} px/frame .*; frame change [\d.]+/255, to centre "
      r"[\d.]+/255",
      out.stdout,
    ), out.stdout
  assert video_io.read_video(tmp_path / "samples" / "video_001.mp4").shape == (4, 16, 16, 3)
  bad = subprocess.run(
    cmd[:4] + ["--config.diffusion.lamm=0.3"], cwd=root, capture_output=True, text=True, timeout=600
  )
  assert bad.returncode != 0 and "Did you mean" in bad.stderr
