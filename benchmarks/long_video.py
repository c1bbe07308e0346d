"""Long videos by replacement (issue 8): frames/s and memory for 64, 128 and 512 frames.

  python -m benchmarks.long_video                          # tiny model, CPU default
  python -m benchmarks.long_video --lengths=64,128,512 --num_steps=25 --json=long.json

A video of L frames is made window by window (`controls.make_window_fn`: one jitted
DDIM `lax.scan` per window, compiled once, `diffusion.long_video.long_video_windows`
streaming the new frames out), so its cost should be linear in the number of windows
1 + (L - N) / (N - O) and its memory independent of L. This measures, per length, the
wall time of the whole video (frames pulled to the host as uint8, as the mp4 writer
gets them; no encoding), frames/s and seconds per window, and the ratio of each
length's time per window to the shortest's (1.0 = linear). Memory: XLA's memory
analysis of the compiled window step (arguments + outputs + temporaries: one number,
the same for every length by construction), the arrays carried between windows, and
after each length the device's `memory_stats()` peak (GPU/TPU; None on CPU) and the
process's peak RSS (on CPU the device memory is host memory).

The model is the tiny demo model (configs/demo.py) with random weights: the cost does
not depend on the weights. The last line, `LONG_VIDEO_JSON {...}`, is the result.
"""

from __future__ import annotations

import dataclasses
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from benchmarks import provenance, xla_analysis
from configs import demo
from videofusion_jax import diffusion
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.long_video import check_long_video, long_video_windows, window_keys
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.from_config import videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.sampling import controls
from videofusion_jax.sampling.generate import sampler_config


@dataclasses.dataclass(frozen=True)
class Settings:
  lengths: tuple[int, ...] = (64, 128, 512)
  window: int = 8  # the demo model's data.num_frames
  overlap: int = 4
  image_size: int = 16
  batch: int = 1  # videos made together
  num_steps: int = 25  # DDIM steps per window (the demo's)
  repeats: int = 1  # timed runs per length (the minimum is reported)

  def validate(self) -> None:
    if not self.lengths or self.batch < 1 or self.num_steps < 1 or self.repeats < 1:
      raise ValueError(
        f"lengths={self.lengths}, batch={self.batch}, num_steps="
        f"{self.num_steps}, repeats={self.repeats}; expected a length "
        "and >= 1 each"
      )
    for length in self.lengths:
      check_long_video(length, self.window, self.overlap)


def model_config(settings: Settings):
  config = demo.get_config()
  config.data.num_frames = settings.window
  config.data.image_size = settings.image_size
  config.sample.num_steps = settings.num_steps
  config.sample.overlap = settings.overlap
  return config


def _rss_peak() -> int:
  """Peak resident set size of this process, in bytes (Linux reports KiB)."""
  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _make_video(step, length, shape, overlap, base_keys, residual_keys) -> int:
  """One long video batch, frames pulled to the host as uint8; returns frames out."""
  frames = 0
  for _, new in long_video_windows(step, length, shape, overlap, base_keys, residual_keys):
    frames += video_io.to_uint8(jax.device_get(new)).shape[1]
  return frames


def run(settings: Settings) -> dict:
  """Time each length; return the result dict (see `format_table`)."""
  settings.validate()
  config = model_config(settings)
  vf = videofusion_config(config)
  shape = (settings.batch, settings.window, settings.image_size, settings.image_size, vf.channels)
  graphdef, state = nnx.split(VideoFusion(vf, rngs=nnx.Rngs(0)))
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  window_fn = controls.make_window_fn(
    graphdef, shape, settings.overlap, vf.lam, sampler_config(config)
  )
  base_keys = video_keys(0, 0, settings.batch)
  residual_keys = video_keys(1, 0, settings.batch)
  known = jnp.zeros((settings.batch, settings.overlap) + shape[2:], jnp.float32)
  kb, kr = window_keys(base_keys, residual_keys, 1)
  start = time.perf_counter()
  compiled = window_fn.lower(state, schedule, kb, kr, known, jnp.asarray(True)).compile()
  compile_s = time.perf_counter() - start
  memory = xla_analysis.memory_bytes(compiled)
  step = lambda *args: compiled(state, schedule, *args)
  jax.block_until_ready(step(kb, kr, known, jnp.asarray(True)))  # warm-up

  rows = []
  for length in settings.lengths:
    windows = check_long_video(length, settings.window, settings.overlap)
    times = []
    for _ in range(settings.repeats):
      start = time.perf_counter()
      frames = _make_video(step, length, shape, settings.overlap, base_keys, residual_keys)
      times.append(time.perf_counter() - start)
    if frames != length:
      raise AssertionError(f"{length} frames requested, {frames} made")
    seconds = min(times)
    rows.append(
      {
        "frames": length,
        "windows": windows,
        "seconds": seconds,
        "frames_per_s": settings.batch * length / seconds,
        "s_per_window": seconds / windows,
        "device_peak_bytes": xla_analysis.device_peak_bytes(),
        "rss_peak_bytes": _rss_peak(),
      }
    )
  for row in rows:
    row["s_per_window_ratio"] = row["s_per_window"] / rows[0]["s_per_window"]
    row["windows_ratio"] = row["windows"] / rows[0]["windows"]
    row["seconds_ratio"] = row["seconds"] / rows[0]["seconds"]
  carried = int(np.prod(known.shape)) * known.dtype.itemsize  # the known frames alone
  return {
    "settings": dataclasses.asdict(settings),
    "window_shape": list(shape),
    "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state))),
    "compile_s": compile_s,
    "memory": dict(memory, carried_bytes=carried),
    "rows": rows,
    **provenance.environment(),
  }


def format_table(result: dict) -> str:
  s, m = result["settings"], result["memory"]
  mib = lambda b: "-" if b is None else f"{b / 2**20:.1f}"
  lines = [
    f"{provenance.describe(result)}; window "
    f"{tuple(result['window_shape'])}, overlap {s['overlap']}, {s['num_steps']} DDIM "
    f"steps/window, {result['params'] / 1e6:.2f} M params (random), compile "
    f"{result['compile_s']:.1f} s",
    f"window step, XLA memory analysis: {mib(m['xla_total'])} MiB (arguments "
    f"{mib(m['xla_arguments'])}, temporaries {mib(m['xla_temp'])}); carried between "
    f"windows {m['carried_bytes'] / 2**10:.1f} KiB",
    f"{'frames':>7} {'windows':>8} {'seconds':>9} {'frames/s':>9} {'s/window':>9} "
    f"{'vs first':>9} {'time x':>7} {'windows x':>9} {'dev peak MiB':>12} "
    f"{'RSS MiB':>8}",
  ]
  for r in result["rows"]:
    lines.append(
      f"{r['frames']:>7} {r['windows']:>8} {r['seconds']:>9.2f} "
      f"{r['frames_per_s']:>9.1f} {r['s_per_window']:>9.3f} "
      f"{r['s_per_window_ratio']:>9.2f} {r['seconds_ratio']:>7.2f} "
      f"{r['windows_ratio']:>9.2f} {mib(r['device_peak_bytes']):>12} "
      f"{mib(r['rss_peak_bytes']):>8}"
    )
  return "\n".join(lines)


def main(argv) -> None:
  del argv
  settings = Settings(
    lengths=tuple(int(x) for x in _LENGTHS.value),
    window=_WINDOW.value,
    overlap=_OVERLAP.value,
    image_size=_SIZE.value,
    batch=_BATCH.value,
    num_steps=_STEPS.value,
    repeats=_REPEATS.value,
  )
  result = run(settings)
  provenance.emit(result, format_table(result), tag="LONG_VIDEO", json_path=_JSON.value)


def _define_flags() -> None:
  global _LENGTHS, _WINDOW, _OVERLAP, _SIZE, _BATCH, _STEPS, _REPEATS, _JSON
  d = Settings()
  _LENGTHS = flags.DEFINE_list("lengths", [str(x) for x in d.lengths], "Video lengths.")
  _WINDOW = flags.DEFINE_integer("window", d.window, "Model window (frames).")
  _OVERLAP = flags.DEFINE_integer("overlap", d.overlap, "Frames shared by windows.")
  _SIZE = flags.DEFINE_integer("image_size", d.image_size, "Frame size.")
  _BATCH = flags.DEFINE_integer("batch", d.batch, "Videos made together.")
  _STEPS = flags.DEFINE_integer("num_steps", d.num_steps, "DDIM steps per window.")
  _REPEATS = flags.DEFINE_integer("repeats", d.repeats, "Timed runs per length (min).")
  _JSON = flags.DEFINE_string("json", "", "Also write the result to this JSON file.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
