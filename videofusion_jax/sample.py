"""Sample videos from a VideoFusion experiment config.

  python -m videofusion_jax.sample --config=configs/demo.py --workdir=runs/demo

Writes `WORKDIR/samples/video_XXX.mp4`, `.gif` and one `strip.png` (a row of frames per
video). Until a trained checkpoint exists in WORKDIR, the weights are freshly
initialised from `config.seed` and the output is noise-like, which the CLI says.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import ml_collections
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from videofusion_jax import diffusion
from videofusion_jax.data import video_io
from videofusion_jax.models.from_config import videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling import SamplerConfig, sample_videos

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and samples.")


def sampler_config(config: ml_collections.ConfigDict) -> SamplerConfig:
  s = config.sample
  return SamplerConfig(sampler=s.sampler, num_steps=s.num_steps, eta=s.eta,
                       clip_x0=s.clip_x0, ddpm_variance=s.ddpm_variance,
                       noise_mode=config.diffusion.noise_mode)


def _progress_line(start: float):
  def show(done: int, total: int):
    elapsed = time.time() - start
    bar = "#" * (20 * done // total)
    eta = elapsed / done * (total - done)
    sys.stderr.write(f"\rsampling [{bar:<20}] {done}/{total} videos, {elapsed:.0f}s "
                     f"elapsed, ETA {eta:.0f}s")
    if done == total:
      sys.stderr.write("\n")
    sys.stderr.flush()
  return show


def sample(config: ml_collections.ConfigDict, workdir: str) -> list[Path]:
  """Generate `config.sample.num_videos` videos into WORKDIR/samples; return the paths."""
  vf = videofusion_config(config)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  model = VideoFusion(vf, rngs=nnx.Rngs(config.seed))
  logging.warning("No trained checkpoint is loaded: sampling from freshly initialised "
                  "weights (seed %d), so the videos will look like noise.", config.seed)
  out_dir = Path(workdir) / "samples"
  s = config.sample
  written, strips = [], []
  batches = sample_videos(
      model, schedule, num_videos=s.num_videos, batch_size=s.batch_size,
      num_frames=config.data.num_frames, image_size=config.data.image_size,
      config=sampler_config(config), base_seed=s.base_seed, residual_seed=s.residual_seed,
      progress=_progress_line(time.time()))
  for videos in batches:
    for video in video_io.to_uint8(videos):
      name = f"video_{len(written):03d}"
      written.append(video_io.write_mp4(out_dir / f"{name}.mp4", video, fps=s.fps))
      video_io.write_gif(out_dir / f"{name}.gif", video, fps=s.fps)
      strips.append(video)
  scale = max(1, 64 // config.data.image_size)
  written.append(video_io.write_png(out_dir / "strip.png",
                                    video_io.frame_strip(np.stack(strips), scale=scale)))
  return written


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _WORKDIR.value is None:
    raise app.UsageError("--workdir is required")
  paths = sample(_CONFIG.value, _WORKDIR.value)
  print(f"wrote {len(paths) - 1} videos (mp4 + gif) and a frame strip to "
        f"{paths[-1].parent}/")


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
