"""Does a clip's cost grow with the video's length? (A benchmark, not a test.)

  python -m benchmarks.clip_decoding [--short_s=10] [--long_s=300] [--height=720]

Writes two files of the same footage once (a photograph filmed by a moving camera, 24
fps, x264 `ultrafast` with its default keyframe interval of 250 frames), 10 seconds and
5 minutes long at 1280x720, and caches them under .cache/benchmarks/clip_decoding/.
Then reads clips (16 frames 2 apart, a new random window per read, resized to 128)
from both, side by side in one process, two ways:

  --decode=window  what VideoFolder does now: seek to the keyframe before the window,
                   decode to its end (data/window_reader.py);
  --decode=full    what it did before: decode every frame of the file to RGB, then cut
                   the window. The old code also held every frame at once (7,200 frames
                   of 2.6 MiB for 5 minutes at 720p: 19 GiB); this one keeps only the
                   window's, so that the long file fits, and reports what the old one
                   held as a computed number.

Prints clips/s, frames and bytes decoded per clip and the largest array bytes held,
per file, and the ratio long/short of each (about 1 means the cost does not grow with
the length). Both modes give the same clip (checked on the first read of each file).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import av
import numpy as np
from absl import app, flags
from PIL import Image

from benchmarks import provenance
from videofusion_jax.data.folders import VideoFolder, resize_and_crop, window_start

_SHORT = flags.DEFINE_float("short_s", 10, "Length of the short file, seconds.")
_LONG = flags.DEFINE_float("long_s", 300, "Length of the long file, seconds.")
_HEIGHT = flags.DEFINE_integer("height", 720, "Frame height (width is 16:9).")
_RATE = flags.DEFINE_integer("rate", 24, "Frame rate of both files.")
_WINDOW_CLIPS = flags.DEFINE_integer("window_clips", 24, "Timed clips per file, window.")
_FULL_CLIPS = flags.DEFINE_integer("full_clips", 2, "Timed clips per file, full decode.")
_DECODE = flags.DEFINE_list("decode", ["full", "window"], "Modes to run, side by side.")
_CACHE = flags.DEFINE_string(
  "cache_dir",
  "",
  "Where the generated files are kept (default .cache/benchmarks/clip_decoding under the repo).",
)
_JSON = flags.DEFINE_string("json", "", "Also write the result to this JSON file.")

NUM_FRAMES, STRIDE, IMAGE_SIZE = 16, 2, 128


def _scene(height: int) -> np.ndarray:
  """A photograph (skimage.data's coffee) scaled to 1.4x the frame height, plus room to
  pan across."""
  try:
    from skimage import data
  except ImportError:
    sys.exit("needs scikit-image for its photographs: pip install -e '.[test]'")
  picture = Image.fromarray(data.coffee())
  h = round(1.4 * height)
  return np.asarray(
    picture.resize((round(h * picture.width / picture.height * 1.3), h), Image.BILINEAR)
  )


def _bounce(distance: float, room: int) -> int:
  d = int(round(distance)) % (2 * room)
  return d if d <= room else 2 * room - d


def make_file(path: Path, seconds: float, height: int, rate: int) -> Path:
  """`seconds` of a camera panning over the scene at 60 px/s (and 20 px/s down), x264
  ultrafast, 8-bit 4:2:0 (the usual web video), written to a temporary name first."""
  if path.is_file():
    return path
  width = (height * 16 // 9) // 2 * 2
  scene = _scene(height)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp.mp4")
  with av.open(str(tmp), mode="w") as container:
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "ultrafast", "crf": "23"}
    for k in range(round(seconds * rate)):
      t = k / rate
      x = _bounce(60 * t, scene.shape[1] - width)
      y = _bounce(20 * t, scene.shape[0] - height)
      frame = np.ascontiguousarray(scene[y : y + height, x : x + width])
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  tmp.rename(path)
  return path


def full_decode_clip(source: VideoFolder, epoch: int) -> tuple[np.ndarray, int, int]:
  """The clip the old VideoFolder.clip gave: every frame decoded to RGB, then the window
  cut. Returns (clip, frames decoded, bytes the old code held: all of them)."""
  path = source.paths[0]
  with av.open(str(path)) as container:
    num_video_frames = container.streams.video[0].frames
    span = (NUM_FRAMES - 1) * STRIDE + 1
    start = window_start(
      num_video_frames, span, random_start=True, seed=source.seed, epoch=epoch, index=0
    )
    wanted = set(range(start, start + span, STRIDE))
    picked, decoded, frame_bytes = [], 0, 0
    for k, frame in enumerate(container.decode(video=0)):
      array = frame.to_ndarray(format="rgb24")
      decoded, frame_bytes = decoded + 1, array.nbytes
      if k in wanted:
        picked.append(array)
  clip = np.stack([resize_and_crop(f, IMAGE_SIZE) for f in picked])
  return clip, decoded, decoded * frame_bytes


def measure(files: dict[str, Path], modes: list[str], window_clips: int, full_clips: int) -> dict:
  """Clips of each file in each mode, interleaved file by file and mode by mode."""
  sources = {
    name: VideoFolder(
      str(path.parent),
      num_frames=NUM_FRAMES,
      image_size=IMAGE_SIZE,
      frame_stride=STRIDE,
      random_start=True,
      seed=0,
    )
    for name, path in files.items()
  }
  rows = {
    (m, n): {"seconds": 0.0, "clips": 0, "decoded": 0, "decoded_bytes": 0, "held_bytes": 0}
    for m in modes
    for n in files
  }
  # Warm-up (file caches, first opens), and the check that both modes read one clip.
  for name, source in sources.items():
    window = source.read_clip(0, epoch=10_000)
    if "full" in modes:
      full, _, _ = full_decode_clip(source, epoch=10_000)
      np.testing.assert_array_equal(
        full, window.frames, err_msg=f"{name}: full and window decodes differ"
      )
  planned = {"window": window_clips, "full": full_clips}
  epoch = 0
  while any(rows[m, n]["clips"] < planned[m] for m in modes for n in files):
    for name, source in sources.items():
      for mode in modes:
        row = rows[mode, name]
        if row["clips"] >= planned[mode]:
          continue
        start = time.perf_counter()
        if mode == "window":
          before = source.decode_stats.decoded_bytes
          window = source.read_clip(0, epoch)
          decoded, held = window.decoded, window.peak_bytes
          decoded_bytes = source.decode_stats.decoded_bytes - before
        else:
          _, decoded, held = full_decode_clip(source, epoch)
          decoded_bytes = held
        row["seconds"] += time.perf_counter() - start
        row["clips"] += 1
        row["decoded"] += decoded
        row["decoded_bytes"] += decoded_bytes
        row["held_bytes"] = max(row["held_bytes"], held)
    epoch += 1
  result = {}
  for (mode, name), row in rows.items():
    result.setdefault(mode, {})[name] = {
      "clips_per_s": row["clips"] / row["seconds"],
      "clips": row["clips"],
      "frames_decoded_per_clip": row["decoded"] / row["clips"],
      "bytes_decoded_per_clip": row["decoded_bytes"] / row["clips"],
      "peak_bytes_held": row["held_bytes"],
    }
  for mode, per_file in result.items():
    short, long = per_file["short"], per_file["long"]
    per_file["ratio_long_short"] = {
      "time_per_clip": short["clips_per_s"] / long["clips_per_s"],
      "bytes_decoded_per_clip": long["bytes_decoded_per_clip"] / short["bytes_decoded_per_clip"],
      "peak_bytes_held": long["peak_bytes_held"] / short["peak_bytes_held"],
    }
  return result


def format_table(result: dict, env: dict, setup: dict) -> str:
  lines = [
    f"{provenance.describe(env)}; {setup['height']}p {setup['rate']} fps x264 "
    f"ultrafast, files {setup['short_s']:g} s and {setup['long_s']:g} s; clips of "
    f"{NUM_FRAMES} frames stride {STRIDE} at {IMAGE_SIZE}^2",
    "| decode | file | clips/s | frames decoded/clip | MB decoded/clip | peak MB held |",
    "|---|---|---|---|---|---|",
  ]
  for mode, per_file in result.items():
    for name in ("short", "long"):
      r = per_file[name]
      lines.append(
        f"| {mode} | {name} | {r['clips_per_s']:.2f} | "
        f"{r['frames_decoded_per_clip']:.0f} | "
        f"{r['bytes_decoded_per_clip'] / 1e6:.0f} | "
        f"{r['peak_bytes_held'] / 1e6:.0f} |"
      )
  for mode, per_file in result.items():
    q = per_file["ratio_long_short"]
    lines.append(
      f"{mode}: long/short time per clip {q['time_per_clip']:.2f}x, bytes "
      f"decoded per clip {q['bytes_decoded_per_clip']:.2f}x, peak bytes held "
      f"{q['peak_bytes_held']:.2f}x"
    )
  return "\n".join(lines)


def run(
  *,
  short_s: float,
  long_s: float,
  height: int,
  rate: int,
  modes: list[str],
  window_clips: int,
  full_clips: int,
  cache_dir: Path,
) -> tuple[dict, str]:
  setup = {"short_s": short_s, "long_s": long_s, "height": height, "rate": rate}
  start = time.perf_counter()
  # One folder per file: each is a VideoFolder of one video.
  files = {
    name: make_file(
      cache_dir / f"{seconds:g}s_{height}p_{rate}fps" / "video.mp4", seconds, height, rate
    )
    for name, seconds in (("short", short_s), ("long", long_s))
  }
  setup["generate_s"] = time.perf_counter() - start
  env = provenance.environment()
  result = {**env, "setup": setup, "modes": measure(files, modes, window_clips, full_clips)}
  return result, format_table(result["modes"], env, setup)


def main(argv):
  del argv
  cache = Path(
    _CACHE.value or Path(__file__).parents[1] / ".cache" / "benchmarks" / "clip_decoding"
  )
  result, table = run(
    short_s=_SHORT.value,
    long_s=_LONG.value,
    height=_HEIGHT.value,
    rate=_RATE.value,
    modes=_DECODE.value,
    window_clips=_WINDOW_CLIPS.value,
    full_clips=_FULL_CLIPS.value,
    cache_dir=cache,
  )
  print(f"files generated (or found cached) in {result['setup']['generate_s']:.1f} s")
  provenance.emit(result, table, tag="CLIP_DECODING", json_path=_JSON.value)


if __name__ == "__main__":
  app.run(main)
