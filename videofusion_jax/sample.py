"""Sample videos from a trained (or, without a checkpoint, a fresh) VideoFusion.

  python -m videofusion_jax.sample --config=configs/demo.py --workdir=runs/demo

Loads the EMA parameters of the latest checkpoint in WORKDIR and does one of four
things, `sample.mode` (`sampling/modes.py`; docs/sampling.md, "Modes and flags"):
- "videos" (default): `WORKDIR/samples/video_XXX.mp4`, `.gif` and one `strip.png` (a
  row of frames per video), with the frame-change numbers printed.
- "seed_grid", implied by `--vary=residual|base|both`: a seed grid (same content / same
  motion, paper Fig. 1).
- "long", implied by `--num_frames=512` (above the model's window): long videos window
  by window (Sec 4.6; `--fixed_base`).
- "cascade", implied by `--superres_workdir=DIR [--superres_config=...]`: the videos,
  then the SR model of DIR on them, written to WORKDIR/samples/ and
  WORKDIR/samples_<H>/; a conditioned SR model is guided too
  (`--superres_guidance_scale`).
Settings that ask for different modes, or contradict `--config.sample.mode=`, are
refused in one line naming them (exit 2), as is a flag the mode would ignore.
The model and clip shape are the ones saved with the checkpoint: a run trained with
`--config.data.image_size=32` samples 32x32 videos without repeating it, and an
override or a config file that contradicts the checkpoint's model or clip shape is
refused, naming the fields (exit 2; `sampling/run_config.py`). The first line printed
says which config was used and ends with the mode. Override sampling settings on the
command line, e.g. `--config.sample.num_videos=16`; the shorthand flags (`--base_seed`,
`--residual_seed`, `--num_videos`, `--vary`, `--num_frames`, `--fixed_base`,
`--class_id`, `--guidance_scale`, `--prompt`, `--prompts_file`) are aliases of the
`config.sample` fields of the same names, and one that disagrees with a
`--config.sample.X=` override is refused (exit 2).
Conditioned models: `--class_id=K` (class-conditioned; default: the classes in turn),
`--guidance_scale=S` (classifier-free guidance), `--prompt="..."` or `--prompts_file=F`
(text-to-video through CLIP and the prior: sample.clip_dir, sample.prior_workdir).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import flags
from ml_collections import config_flags

from videofusion_jax import cli, parallel, storage
from videofusion_jax.data import video_io
from videofusion_jax.data.sources import make_source
from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.metrics.motion import (
  brightness_flicker,
  centre_distance,
  frame_change,
  object_motion,
)
from videofusion_jax.models.from_config import condition_of
from videofusion_jax.progress import Progress
from videofusion_jax.sampling import controls, generate, run_config
from videofusion_jax.sampling.conditions import read_prompts
from videofusion_jax.sampling.modes import sample_mode
from videofusion_jax.sampling.pipeline import Pipeline

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Directory with checkpoints; samples go to WORKDIR/samples."
)
# Shorthands for the config fields users change most (config.sample.*).
_BASE_SEED = flags.DEFINE_integer("base_seed", None, "Base-noise seed: the content.")
_RESIDUAL_SEED = flags.DEFINE_integer("residual_seed", None, "Residual-noise seed: motion.")
_NUM_VIDEOS = flags.DEFINE_integer("num_videos", None, "How many videos to write.")
_VARY = flags.DEFINE_enum(
  "vary",
  None,
  ["residual", "base", "both"],
  "Seed grid (Fig. 1): keep the base seed and vary the residual one, "
  "the reverse, or num_videos x num_videos of both.",
)
_NUM_FRAMES = flags.DEFINE_integer(
  "num_frames",
  None,
  "Frames per video; more than the model's window makes long videos window by window.",
)
_FIXED_BASE = flags.DEFINE_boolean(
  "fixed_base",
  None,
  "Long videos: one base noise for the whole video (false: fresh per window, the baseline).",
)
_SUPERRES_WORKDIR = flags.DEFINE_string(
  "superres_workdir",
  None,
  "Cascade: super-resolve "
  "the videos with this SR model's workdir, or a "
  "converted Karlo SR folder (convert unclip's "
  "OUT/super_res_first); they go to "
  "WORKDIR/samples_<H>/.",
)
_SUPERRES_CONFIG = config_flags.DEFINE_config_file(
  "superres_config",
  None,
  "Cascade: the SR experiment config (default: the one saved "
  "with --superres_workdir's checkpoint; for a converted folder, its sampler settings, "
  "by default the base config's).",
  lock_config=True,
)
_SUPERRES_GUIDANCE = flags.DEFINE_float(
  "superres_guidance_scale",
  None,
  "Cascade: classifier-free guidance scale of a "
  "conditioned SR model (default: its config's sample.guidance_scale).",
)
_CLASS_ID = flags.DEFINE_integer(
  "class_id", None, "Class-conditioned models: the class to sample (default: the classes in turn)."
)
_PROMPT = flags.DEFINE_string(
  "prompt",
  None,
  'Text-to-video: the prompt ("" samples '
  "unconditionally); needs sample.clip_dir and "
  "sample.prior_workdir.",
)
_PROMPTS_FILE = flags.DEFINE_string(
  "prompts_file", None, "Text-to-video: a file of prompts, one per line (one video each)."
)
_GUIDANCE = flags.DEFINE_float(
  "guidance_scale", None, "Classifier-free guidance scale (1: conditional only, 0: unconditional)."
)


def synthetic_motion(config, videos: np.ndarray, num_clips: int = 64) -> str:
  """The samples' object motion, frame change and distance to the centre frame beside
  the synthetic data's.

  Frame change alone cannot tell a glide from jitter in place. On the synthetic set's
  flat background the objects' centroid can (`metrics.motion.object_motion`).
  """
  source = make_source(config.data, seed=config.seed)
  clips = [source[i]["video"] for i in range(min(num_clips, len(source)))]
  data = video_io.to_uint8(np.stack(clips))

  def line(v):
    return (
      f"{object_motion(v).describe()}; frame change {frame_change(v):.1f}/255, "
      f"to centre {centre_distance(v):.1f}/255"
    )

  return f"samples: {line(videos)}\ndata:    {line(data)}"


# The shorthand flags and the `config.sample` fields they set (docs/sampling.md's table).
SHORTHANDS = (
  (_BASE_SEED, "base_seed"),
  (_RESIDUAL_SEED, "residual_seed"),
  (_NUM_VIDEOS, "num_videos"),
  (_VARY, "vary"),
  (_NUM_FRAMES, "num_frames"),
  (_FIXED_BASE, "fixed_base"),
  (_CLASS_ID, "class_id"),
  (_GUIDANCE, "guidance_scale"),
  (_PROMPT, "prompt"),
  (_PROMPTS_FILE, "prompts_file"),
)


def apply_shorthands(config, overrides) -> None:
  """Set `config.sample.<field>` from each shorthand flag given; a flag and a
  `--config.sample.<field>=` override that disagree are refused (ConfigError, exit 2)."""
  for flag, field in SHORTHANDS:
    if flag.value is None:
      continue
    typed = overrides.get(f"sample.{field}", flag.value)
    if typed != flag.value:
      raise cli.ConfigError(
        f"--{flag.name}={flag.value} and --config.sample.{field}={typed} disagree "
        f"(--{flag.name} is short for --config.sample.{field}): give one"
      )
    config.sample[field] = flag.value


def check_mode_flags(mode: str) -> None:
  """Refuse a flag the chosen mode would ignore (one line, exit 2)."""
  ignored = [
    (_FIXED_BASE, "long"),
    (_SUPERRES_CONFIG, "cascade"),
    (_SUPERRES_GUIDANCE, "cascade"),
  ]
  for flag, needs in ignored:
    if flag.value is not None and mode != needs:
      raise cli.ConfigError(
        f"--{flag.name} applies to sample.mode={needs!r} only; this command's mode is {mode!r}"
      )


def write_videos(config, workdir: str) -> list[Path]:
  """Mode "videos": `sample.num_videos` clips of a `Pipeline` (the Python API's arrays)
  written as mp4 + gif + strip.png to WORKDIR/samples; return the paths."""
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  storage.check_reachable(workdir, "--workdir")  # gs://: no bucket, no credentials
  pipe = Pipeline(config, workdir)
  s = config.sample
  batches = pipe.batches(
    s.num_videos,
    s.base_seed,
    s.residual_seed,
    progress=Progress("sampling", unit="videos").update,
  )
  out_dir = storage.path(workdir) / "samples"
  paths = generate.write_samples(batches, out_dir, fps=s.fps, image_size=config.data.image_size)
  if condition_of(pipe.spec.config).enabled:
    generate.write_prompts(out_dir, read_prompts(s), s.num_videos)
  return paths


def print_videos(config, workdir: str) -> None:
  """Mode "videos": write them (`write_videos`), then their motion numbers."""
  paths = write_videos(config, workdir)
  videos = np.stack([video_io.read_video(p) for p in paths if p.suffix == ".mp4"])
  print(
    f"wrote {len(videos)} videos (mp4 + gif) and a frame strip to {paths[-1].parent}/ "
    f"(frame-to-frame change {frame_change(videos):.1f}/255, brightness flicker "
    f"{brightness_flicker(videos):.1f}/255, frames to centre "
    f"{centre_distance(videos):.1f}/255)"
  )
  if config.data.source == "synthetic":
    print(synthetic_motion(config, videos))


def seed_grid_files(config, workdir: str) -> list[Path]:
  """Mode "seed_grid": the `sample.vary` grid of `sample.num_videos` per axis, a
  `Pipeline.seed_grid`, written to WORKDIR/samples (`controls.write_seed_grid`)."""
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  s = config.sample
  videos = Pipeline(config, workdir).seed_grid(
    s.num_videos,
    s.vary,
    s.base_seed,
    s.residual_seed,
    progress=Progress("seed grid", unit="videos").update,
  )
  return controls.write_seed_grid(videos, storage.path(workdir) / "samples", vary=s.vary, fps=s.fps)


def write_seed_grid(config, workdir: str) -> None:
  paths = seed_grid_files(config, workdir)
  print(f"wrote a {config.sample.vary} seed grid of {len(paths) - 1} videos (mp4) and {paths[-1]}")


def write_long_videos(config, workdir: str) -> None:
  s = config.sample
  paths = controls.long_videos(config, workdir)
  print(
    f"wrote {len(paths)} videos of {s.num_frames} frames to {paths[-1].parent}/ "
    f"(fixed_base={s.fixed_base})"
  )


def cascade_files(
  config,
  workdir: str,
  superres_workdir: str,
  superres_config=None,
  *,
  superres_guidance_scale: float | None = None,
) -> tuple[list[Path], list[Path]]:
  """Mode "cascade": a `Pipeline` with DIR as its SR stage; its base videos written to
  WORKDIR/samples and their super-resolved versions to WORKDIR/samples_<H> (an mp4 and
  a gif per video, then the frame strip, as `generate.write_samples`); return both
  lists of paths."""
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  pipe = Pipeline(
    config,
    workdir,
    superres_workdir=superres_workdir,
    superres_config=superres_config,
    superres_guidance_scale=superres_guidance_scale,
  )
  s = config.sample
  low, high = pipe.cascade(
    s.num_videos,
    s.base_seed,
    s.residual_seed,
    progress=Progress("base videos", unit="videos").update,
    superres_progress=Progress("super-resolution", unit="videos").update,
  )
  out = storage.path(workdir)
  low_paths = generate.write_samples(
    [low], out / "samples", fps=s.fps, image_size=config.data.image_size
  )
  size = pipe.image_size
  high_paths = generate.write_samples(high, out / f"samples_{size}", fps=s.fps, image_size=size)
  return low_paths, high_paths


def write_cascade(config, workdir: str) -> None:
  low, high = cascade_files(
    config,
    workdir,
    _SUPERRES_WORKDIR.value,
    _SUPERRES_CONFIG.value,
    superres_guidance_scale=_SUPERRES_GUIDANCE.value,
  )
  print(
    f"wrote {len(low) - 1} videos to {low[-1].parent}/ and their super-resolved "
    f"versions to {high[-1].parent}/"
  )


WRITERS = {
  "videos": print_videos,
  "seed_grid": write_seed_grid,
  "long": write_long_videos,
  "cascade": write_cascade,
}


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}", cli.BAD_INPUT)
  quiet_library_logs()
  # The checkpoint's config, checked against the file and the --config.x= overrides
  # (sampling/run_config.py); locked: existing fields can change, new ones cannot appear.
  overrides = run_config.command_line_overrides(flags.FLAGS["config"])
  run = run_config.checkpoint_config(_CONFIG.value, _WORKDIR.value, overrides)
  config = run.config
  apply_shorthands(config, overrides)
  prompts = read_prompts(config.sample)
  if prompts and _NUM_VIDEOS.value is None:
    config.sample.num_videos = len(prompts)  # one video per prompt
  mode = sample_mode(
    config.sample,
    window=config.data.num_frames,
    superres_workdir=_SUPERRES_WORKDIR.value or "",
    explicit="sample.mode" in overrides,
  )
  check_mode_flags(mode)
  print(f"{run.describe()}; mode: {mode}", flush=True)
  WRITERS[mode](config, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
