"""Long videos on a trained checkpoint, per overlap and window method: does a long video's
frame change stay near its first window's?

  python -m benchmarks.long_video_overlap --workdir=runs/demo --overlaps=7,4 --windows=20 \
      --methods=plain,recentre

Makes `--num_videos` long videos of `--windows` windows per (overlap, method) with the
sample CLI's window step (`controls.make_window_fn`), keys (`sample.base_seed`,
`sample.residual_seed`) and base-noise rule, from the EMA parameters of WORKDIR's
checkpoint, and prints per method: the frame change (0..255, `metrics.motion.
frame_change`) of every window of the video (frames w S .. w S + N - 1, S = N - O, as
`benchmarks/long_video_windows.py` reads the CLI's mp4s), the largest later window
against the first, and over the last window's frames the mean |x_t - x_(t-k)| for
k = 1..N-1 (at overlap N - 1 the plain method's new frames follow the frame N - 1 - c
back, c the centre: issue 32). Methods: `plain` (the replacement method) and
`recentre` (`long_video_windows(recentre=True)`); the `release:k` and `lag:m` rows of
benchmarks/RESULTS.md ran this script at commit 3ee647c, whose `window_step` had those
options (since removed). The config is configs/demo.py's unless `--config_setting` names
another setting of it. Not a timing.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import numpy as np

from benchmarks.long_video_windows import window_changes
from configs import demo
from videofusion_jax import diffusion
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.long_video import long_video_windows
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.from_config import ModelSpec, videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling import controls
from videofusion_jax.sampling.generate import load_ema_params, sampler_config

METHODS = {"plain": False, "recentre": True}  # method -> long_video_windows' recentre


def long_video_frames(
  config, workdir, overlap, num_windows, recentre: bool = True, *, on_window=None
):
  """Each window's new frames (K, n, H, W, C) in [-1, 1], as they come, of long videos of
  `num_windows` windows made as `controls.long_videos` makes them (same window step,
  keys and base-noise rule) with `recentre` choosing the layout; `on_window(output)`,
  if given, sees each window step's whole output (K, N, H, W, C)."""
  vf = videofusion_config(config)
  s, window = config.sample, config.data.num_frames
  shape = (s.num_videos, window, config.data.image_size, config.data.image_size, vf.channels)
  graphdef, state = load_ema_params(ModelSpec(vf, VideoFusion), config, workdir)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  step = functools.partial(
    controls.make_window_fn(graphdef, shape, overlap, vf.lam, sampler_config(config)),
    state,
    schedule,
  )

  def watched_step(*args):
    output = step(*args)
    if on_window is not None:
      on_window(output)
    return output

  for _, new in long_video_windows(
    watched_step,
    window + (num_windows - 1) * (window - overlap),
    shape,
    overlap,
    video_keys(s.base_seed, 0, s.num_videos),
    video_keys(s.residual_seed, 0, s.num_videos),
    fixed_base=bool(s.fixed_base),
    recentre=recentre,
  ):
    yield new


def make_videos(config, workdir, overlap, num_windows, recentre: bool) -> np.ndarray:
  """(K, L, H, W, C) uint8 long videos of `num_windows` windows."""
  frames = long_video_frames(config, workdir, overlap, num_windows, recentre)
  return np.concatenate([video_io.to_uint8(jax.device_get(f)) for f in frames], axis=1)


def lag_profile(videos: np.ndarray, window: int) -> np.ndarray:
  """Mean |x_t - x_(t-k)|, k = 1..window - 1, over the last window's frames (0..255)."""
  late = videos[:, -window:].astype(np.float32)
  return np.array([np.abs(late[:, k:] - late[:, :-k]).mean() for k in range(1, window)])


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--overlaps", default="7,4")
  parser.add_argument("--windows", type=int, default=20)
  parser.add_argument("--methods", default="plain,recentre")
  parser.add_argument("--num_videos", type=int, default=4)
  parser.add_argument("--config_setting", default="")
  parser.add_argument("--eta", type=float, default=None, help="default: the config's")
  parser.add_argument("--strip", default="", help="write OVERLAP_METHOD.png strips here")
  args = parser.parse_args(argv)
  config = demo.get_config(args.config_setting)
  if args.eta is not None:
    config.sample.eta = args.eta
  config.sample.num_videos = config.sample.batch_size = args.num_videos
  window = config.data.num_frames
  methods = args.methods.split(",")
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise SystemExit(f"--methods: {unknown[0]!r}; expected {' or '.join(METHODS)}")
  rows = []
  for overlap in (int(o) for o in args.overlaps.split(",")):
    for method in methods:
      videos = make_videos(config, args.workdir, overlap, args.windows, METHODS[method])
      change = window_changes(videos, window, overlap)
      row = {
        "overlap": overlap,
        "method": method,
        "eta": float(config.sample.eta),
        "frames": int(videos.shape[1]),
        "change": [round(float(c), 2) for c in change],
        "worst_ratio": round(float(change[1:].max() / change[0]), 2),
        "last_ratio": round(float(change[-1] / change[0]), 2),
        "pixel_std_first_last": [
          round(float(videos[:, :window].std()), 1),
          round(float(videos[:, -window:].std()), 1),
        ],
        "lags": [round(float(x), 1) for x in lag_profile(videos, window)],
      }
      rows.append(row)
      print(
        f"overlap {overlap} {method:>18}: change {' '.join(f'{c:.1f}' for c in change)}; "
        f"worst/first {row['worst_ratio']}, last/first {row['last_ratio']}; std "
        f"{row['pixel_std_first_last']}; last window |x_t - x_(t-k)| k=1..: "
        + " ".join(f"{x:.1f}" for x in row["lags"]),
        flush=True,
      )
      print("LONG_VIDEO_OVERLAP_JSON " + json.dumps(row), flush=True)
      if args.strip:  # every second frame, a row per video, shown 4x
        path = Path(args.strip) / f"overlap{overlap}_{method.replace(':', '')}.png"
        video_io.write_png(path, video_io.frame_strip(videos[:, ::2], scale=4))
  return rows


if __name__ == "__main__":
  main()
