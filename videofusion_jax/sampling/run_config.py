"""The config that sampling (and evaluation that samples) runs with: the checkpoint's.

Every checkpoint holds its run's config (checkpoint.py). The sample and evaluate CLIs
also read a `--config` file, usually the file the run was trained with, but without
the command-line overrides it was trained with: a run trained with
`--config=configs/demo.py --config.data.image_size=32` and sampled with
`--config=configs/demo.py` used to write 16x16 videos from a 32x32 model. The rules,
field by field:

- Data shape fields (`DATA_SHAPE_FIELDS`: clip length, frame size, channels, an SR
  model's low-res size): the checkpoint's values. A file that says otherwise holds the
  default the training command overrode; the weights were trained on the checkpoint's
  clips, so its values are taken, and the CLI's config line says so.
- Fields that define the network (`model.*`, `diffusion.*`, `cond.*`, but not the
  execution knobs such as `model.dtype`): the file must agree with the checkpoint. These
  are what one experiment config differs from another in, so a file that disagrees is
  taken to be another run's config, and refused with each field and both values (an
  explicit override equal to the checkpoint's value settles a field).
- An explicit `--config.x=...` override of any of those fields that differs from the
  checkpoint is refused: the weights cannot change shape or meaning, and silently
  ignoring what the user typed would be worse.
- Every other field (`sample.*`, `data.path`, `mesh.*`, `seed`, ...) is how to sample
  now, not what was trained: the file's value with the command-line overrides.

Without a checkpoint (a fresh model, `sample.allow_untrained`) the config is used as
given. The CLIs stay thin: `checkpoint_config(config, workdir, overrides)` is all they
call, with `command_line_overrides(flag)` for the fields the user typed.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

import ml_collections
from ml_collections import config_flags

from videofusion_jax.checkpoint import (
  DATA_SHAPE_FIELDS,
  CheckpointError,
  Checkpoints,
  differing_fields,
)
from videofusion_jax.cli import ConfigError

# The data fields sampling takes from the checkpoint (the low-res size only exists in
# super-resolution configs, and is skipped where a config lacks it).
SAMPLING_DATA_FIELDS = (*DATA_SHAPE_FIELDS, "data.low_res_size")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """The config to sample with, and where its fields came from (for the CLI's line)."""

  config: ml_collections.ConfigDict
  step: int | None  # the checkpoint it comes from; None: none yet
  directory: str  # the checkpoint folder
  from_checkpoint: tuple[str, ...]  # "data.image_size=32 (file: 16)"
  overrides: tuple[str, ...]  # "sample.num_steps=2", as typed

  def describe(self) -> str:
    overrides = ", ".join(self.overrides) or "none"
    if self.step is None:
      return (
        f"config: the --config file (no checkpoint in {self.directory}); overrides: {overrides}"
      )
    taken = (
      f"; taken from it, not the config file: {', '.join(self.from_checkpoint)}"
      if self.from_checkpoint
      else ""
    )
    return f"config: saved with step {self.step} in {self.directory}{taken}; overrides: {overrides}"


def command_line_overrides(config_flag) -> dict[str, Any]:
  """{field path: value} of every `--config.x.y=value` on the command line, for the flag
  instance `flags.FLAGS["config"]` (ml_collections records them as it parses)."""
  return dict(config_flags.get_override_values(config_flag))


def _overridden(field: str, overrides: Mapping[str, Any]) -> bool:
  """`field` was set on the command line, itself or through a section above it."""
  return any(field == key or field.startswith(f"{key}.") for key in overrides)


def _lookup(tree: dict, field: str) -> Any:
  for part in field.split("."):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return tree


def merge_with_saved(
  config: ml_collections.ConfigDict,
  saved: dict,
  *,
  step: int,
  directory: str,
  overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
  """`config` (the file with the command-line `overrides` already applied) checked
  against and completed from `saved`, step `step`'s config (see the module docstring).

  Raises `ConfigError` (exit 2) naming every refused field with both values.
  """
  overrides = dict(overrides or {})
  refused = []
  for field, was, now in differing_fields(saved, config):
    if _overridden(field, overrides):
      refused.append(f"--config.{field}={_text(now)} (checkpoint: {_text(was)})")
    else:
      refused.append(f"{field}={_text(now)} in the config file (checkpoint: {_text(was)})")
  now_tree = json.loads(config.to_json())
  taken = {}
  for field in SAMPLING_DATA_FIELDS:
    was, now = _lookup(saved, field), _lookup(now_tree, field)
    if was is None or now is None or was == now:
      continue
    if _overridden(field, overrides):
      refused.append(f"--config.{field}={_text(now)} (checkpoint: {_text(was)})")
    else:
      taken[field] = (was, now)
  if refused:
    raise ConfigError(
      f"step {step} in {directory} was trained with other settings: "
      f"{'; '.join(refused)}. The weights cannot change shape or meaning: drop those "
      "overrides, and pass the config file the run was trained with (its data shape "
      "comes from the checkpoint)"
    )
  config = config.copy_and_resolve_references()  # the caller's stays as it was
  for field, (was, _) in taken.items():
    section, name = field.split(".")
    config[section][name] = was
  return RunConfig(
    config,
    step,
    directory,
    tuple(f"{field}={_text(was)} (file: {_text(now)})" for field, (was, now) in taken.items()),
    tuple(f"{field}={_text(value)}" for field, value in overrides.items()),
  )


def checkpoint_config(
  config: ml_collections.ConfigDict, workdir: str, overrides: Mapping[str, Any] | None = None
) -> RunConfig:
  """The config to sample WORKDIR's latest checkpoint with: `merge_with_saved` with that
  step's saved config, or `config` as it is when WORKDIR holds no checkpoint."""
  with Checkpoints(workdir, read_only=True) as ckpt:
    step = ckpt.latest_step()
    saved = None
    if step is not None:
      try:
        saved = ckpt.saved_config(step)
      except Exception as e:  # any failure to read is the step's damage
        raise CheckpointError(
          f"step {step} in {ckpt.directory}: its saved config does "
          f"not read ({type(e).__name__}: {e})"
        ) from None
  directory = str(ckpt.directory)
  if saved is None:
    overrides = dict(overrides or {})
    return RunConfig(
      config,
      None,
      directory,
      (),
      tuple(f"{field}={_text(value)}" for field, value in overrides.items()),
    )
  return merge_with_saved(config, saved, step=step, directory=directory, overrides=overrides)


def _text(value: Any) -> str:
  """A value as the JSON of a saved config shows it (tuples as lists)."""
  return json.dumps(list(value) if isinstance(value, tuple) else value)
