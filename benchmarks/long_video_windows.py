"""Frame change per window of the long videos the sample CLI wrote, and a frame strip.

  python -m videofusion_jax.sample --config=configs/demo.py --workdir=runs/demo --num_frames=36
  python -m benchmarks.long_video_windows --workdir=runs/demo --window=8 --overlap=4 \
      --strip=docs/long_video_strip.png

Reads WORKDIR/samples/long_*.mp4. Window w holds frames w * (window - overlap) ...
+ window; its frame change is `metrics.motion.frame_change` over those frames of every
video (0..255 units), the measure the sample CLI prints for ordinary samples. A later
window that comes out as noise shows as a frame change several times the first
window's (issue 32: 12-15/255 in the first, 37-64/255 after it). The strip is every
`--every`-th frame, a row per video, shown 4x (`video_io.frame_strip`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from videofusion_jax.data import video_io
from videofusion_jax.metrics.motion import frame_change


def window_changes(videos: np.ndarray, window: int, overlap: int) -> np.ndarray:
  """(windows,) frame change of each window of uint8 videos (K, N, H, W, C)."""
  stride = window - overlap
  starts = range(0, videos.shape[1] - window + 1, stride)
  return np.array([frame_change(videos[:, s : s + window]) for s in starts])


def main(argv: list[str] | None = None) -> np.ndarray:
  """Print the table (and write the strip); return the frame change per window."""
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--window", type=int, required=True, help="the model's data.num_frames")
  parser.add_argument("--overlap", type=int, required=True, help="sample.overlap used")
  parser.add_argument("--strip", default=None, help="write a frame strip PNG here")
  parser.add_argument("--every", type=int, default=2, help="strip: every k-th frame")
  args = parser.parse_args(argv)
  paths = sorted((Path(args.workdir) / "samples").glob("long_*.mp4"))
  if not paths:
    raise SystemExit(f"no long_*.mp4 in {args.workdir}/samples")
  videos = np.stack([video_io.read_video(p) for p in paths])
  change = window_changes(videos, args.window, args.overlap)
  per_video = np.stack([window_changes(v[None], args.window, args.overlap) for v in videos])
  print(
    f"{len(paths)} videos of {videos.shape[1]} frames, window {args.window}, "
    f"overlap {args.overlap}: frame change per window (0..255)"
  )
  print("  all videos: " + " ".join(f"{c:.1f}" for c in change))
  for path, row in zip(paths, per_video):
    print(f"  {path.name}: " + " ".join(f"{c:.1f}" for c in row))
  print(
    f"  later windows / first: {change[1:].min() / change[0]:.2f}-"
    f"{change[1:].max() / change[0]:.2f}; pixel std per window: "
    + " ".join(
      f"{videos[:, s : s + args.window].astype(np.float32).std():.1f}"
      for s in range(0, videos.shape[1] - args.window + 1, args.window - args.overlap)
    )
  )
  # Which earlier frame a late frame resembles: at overlap window - 1 on the demo the
  # new frame copies the known centre frame (window - 1 - centre back) and drifts from
  # its neighbours (videofusion_jax/diffusion/long_video.py).
  late = videos[:, -args.window :].astype(np.float32)
  print(
    f"  last window, mean |x_t - x_(t-k)| for k = 1..{args.window - 1}: "
    + " ".join(f"{np.abs(late[:, k:] - late[:, :-k]).mean():.1f}" for k in range(1, args.window))
  )
  if args.strip:
    strip = video_io.frame_strip(videos[:, :: args.every], scale=4)
    print(f"wrote {video_io.write_png(args.strip, strip)} ({strip.shape[1]}x{strip.shape[0]})")
  return change


if __name__ == "__main__":
  main()
