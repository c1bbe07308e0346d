"""Decomposition controls with the real (tiny, untrained) model: seed grids, per-video
keys through VideoSampler, long videos from Python and from the CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from videofusion_jax import diffusion
from videofusion_jax import sample as sample_cli
from videofusion_jax.configs import demo
from videofusion_jax.data import video_io
from videofusion_jax.models.from_config import videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling import controls
from videofusion_jax.sampling.generate import VideoSampler, sampler_config

ROOT = Path(__file__).parents[1]


def tiny_config():
  config = demo.get_config("setting=tiny")
  config.sample.num_steps = 3  # this file's sampler shape
  config.sample.allow_untrained = True  # no checkpoint in these workdirs
  return config


def test_video_k_is_the_same_whatever_the_batch_size():
  config = tiny_config()
  vf = videofusion_config(config)
  graphdef, state = nnx.split(VideoFusion(vf, rngs=nnx.Rngs(0)))
  schedule = diffusion.make_schedule("cosine", 1000)

  def videos(batch_size, num_videos):
    sampler = VideoSampler(
      graphdef,
      vf,
      num_frames=4,
      image_size=16,
      batch_size=batch_size,
      config=sampler_config(config),
    )
    return np.concatenate(
      list(sampler.batches(state, schedule, num_videos=num_videos, base_seed=3, residual_seed=4))
    )

  three = videos(2, 3)  # batches of 2: the last one padded
  assert three.shape == (3, 4, 16, 16, 3)
  np.testing.assert_allclose(videos(2, 1)[0], three[0], atol=1e-5)
  np.testing.assert_allclose(three[2], videos(2, 4)[2], atol=1e-5)
  assert np.abs(three[0] - three[1]).mean() > 1e-3


def test_seed_grid_keeps_content_with_the_base_seed(tmp_path):
  """With DDIM (eta = 0) the centre frame only ever sees the base generator, so videos
  sharing a base seed share their centre frame exactly, whatever the residual seed;
  the other frames differ."""
  config = tiny_config()
  config.sample.vary = "residual"
  paths = sample_cli.seed_grid_files(config, str(tmp_path))  # the CLI's --vary=residual
  assert [p.name for p in paths] == [
    "grid_residual_b0_r0.mp4",
    "grid_residual_b0_r1.mp4",
    "grid_residual.png",
  ]
  png = np.asarray(Image.open(paths[-1]))
  assert png.shape == (4 * 33, 4 * 67, 3)  # 2 videos x 4 frames of 16 + gaps, shown 4x
  a, b = (video_io.read_video(p) for p in paths[:2])
  c = diffusion.centre_index(4)
  assert np.abs(a[c].astype(int) - b[c]).max() <= 2  # mp4 rounding only
  assert np.abs(a[0].astype(int) - b[0]).mean() > 5


def test_long_video_from_python_streams_the_requested_frames(tmp_path):
  config = tiny_config()
  config.sample.num_videos = 3  # batches of 2: a file per video, none for the padding
  config.sample.num_frames = 8  # window 4, overlap 2: 3 windows
  paths = controls.long_videos(config, str(tmp_path))
  assert [p.name for p in paths] == ["long_000.mp4", "long_001.mp4", "long_002.mp4"]
  videos = [video_io.read_video(p) for p in paths]
  assert all(v.shape == (8, 16, 16, 3) for v in videos)
  assert np.abs(videos[0].astype(int) - videos[2]).mean() > 1  # its own keys, not a copy
  assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [p.name for p in paths]
  config.sample.num_frames = 9
  with pytest.raises(ValueError, match="num_frames=9.*stride=2"):
    controls.long_videos(config, str(tmp_path))
  config.sample.num_frames = 8
  config.sample.sampler = "ddpm"
  with pytest.raises(ValueError, match="long videos use DDIM"):
    controls.long_videos(config, str(tmp_path))


def _cli(tmp_path, *flags):
  cmd = [
    sys.executable,
    "-m",
    "videofusion_jax.sample",
    "--config=configs/demo.py",
    f"--workdir={tmp_path}",
    "--config.data.num_frames=4",
    "--config.sample.num_steps=2",
    "--config.sample.allow_untrained=True",
    *flags,
  ]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # two CLI subprocesses; the Python paths are tested above
def test_cli_long_video_and_seed_grid(tmp_path):
  out = _cli(tmp_path, "--num_frames=12", "--num_videos=1", "--fixed_base=false")
  assert out.returncode == 0, out.stderr[-2000:]
  assert "wrote 1 videos of 12 frames" in out.stdout and "fixed_base=False" in out.stdout
  assert "long videos 5/5 windows" in out.stderr  # progress per window
  assert video_io.read_video(tmp_path / "samples" / "long_000.mp4").shape == (12, 16, 16, 3)
  out = _cli(tmp_path, "--vary=base", "--num_videos=2")
  assert out.returncode == 0, out.stderr[-2000:]
  png = np.asarray(Image.open(tmp_path / "samples" / "grid_base.png"))
  assert png.shape[0] == 2 * 4 * (16 + 1) - 4  # 2 rows, shown 4x
