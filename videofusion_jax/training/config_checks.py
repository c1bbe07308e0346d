"""Every check of a training config that needs neither a compile nor a file, run before
the workdir is created: a typo costs seconds, names the field as the user writes it
(`diffusion.lam`, `data.image_size`), and leaves nothing behind."""

from __future__ import annotations

import ml_collections

from videofusion_jax import storage
from videofusion_jax.cli import ConfigError
from videofusion_jax.models.from_config import ModelSpec, model_spec
from videofusion_jax.training.optimizer import make_optimizer

POSITIVE_TRAIN_FIELDS = (
  "num_steps",
  "batch_size",
  "log_every",
  "checkpoint_every",
  "max_checkpoints",
  "max_nonfinite_steps",
)


def check_train_fields(t: ml_collections.ConfigDict) -> None:
  for name in POSITIVE_TRAIN_FIELDS:
    if int(t[name]) < 1:
      raise ValueError(f"train.{name}={t[name]}; expected >= 1")
  if not 0.0 <= t.ema_decay < 1.0:
    raise ValueError(f"train.ema_decay={t.ema_decay}; expected 0 <= ema_decay < 1")
  allow = t.allow_local_workdir_multihost
  if not isinstance(allow, bool):
    raise ValueError(f"train.allow_local_workdir_multihost={allow!r}; expected True or False")


def check_shared_workdir(workdir: str, t: ml_collections.ConfigDict, process_count: int) -> None:
  """A multi-process run needs a workdir every host sees: a local path there gives each
  host a folder of its own, and the collective save writes shards no host can restore.
  A `scheme://` path other than file:// (gs://, s3://) counts as shared; a local path
  only with `train.allow_local_workdir_multihost` (an NFS mount). Raises ConfigError."""
  if process_count < 2 or storage.is_remote(workdir):
    return
  if not t.allow_local_workdir_multihost:
    raise ConfigError(
      f"--workdir={workdir} is a local path, but this run has {process_count} "
      "processes that must all write the same checkpoint: use a gs:// bucket, or set "
      "--config.train.allow_local_workdir_multihost=True if every host mounts this "
      "path (NFS)"
    )


def check_data_fields(data: ml_collections.ConfigDict) -> None:
  """Data fields whose range a folder would otherwise only meet at the first clip."""
  fps = data.fps
  if fps is not None and not float(fps) > 0:
    raise ValueError(
      f"data.fps={fps}; expected > 0 (frames per second of a clip), or "
      "None to take every data.frame_stride-th frame"
    )
  if int(data.frame_stride) < 1:
    raise ValueError(f"data.frame_stride={data.frame_stride}; expected >= 1")


def check_clip_shape(spec: ModelSpec, data: ml_collections.ConfigDict) -> None:
  """The clips `data` describes go through the model (frames, size, channels)."""
  shape = (1, data.num_frames, data.image_size, data.image_size, data.channels)
  try:
    spec.config.check_video(shape, name="clip")
  except ValueError as e:
    raise ValueError(
      f"data.num_frames={data.num_frames}, data.image_size="
      f"{data.image_size}, data.channels={data.channels}: {e}"
    ) from None


def check_config(config: ml_collections.ConfigDict) -> ModelSpec:
  """The model to train; raises ConfigError naming the first bad field."""
  try:
    check_train_fields(config.train)
    check_data_fields(config.data)
    spec = model_spec(config)
    make_optimizer(config.optim, config.train.num_steps)
    check_clip_shape(spec, config.data)
  except (ValueError, KeyError, AttributeError) as e:
    raise ConfigError(str(e)) from None
  return spec
