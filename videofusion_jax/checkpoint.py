"""Checkpoints in WORKDIR/checkpoints through an orbax `CheckpointManager`.

One step directory holds the train state (model + optimizer, `nnx.State`), the EMA
parameters, the grain iterator state and the config as JSON. orbax writes each step to
a temporary directory and renames it when complete, so a save killed midway is never
the one resumed from. Restores go onto the shardings of the target the caller builds
(`jax.eval_shape` of the init function), so a run can resume on another mesh.

What a long run must survive: nothing non-finite is ever saved (`save` refuses it) or
restored (`restore` refuses it, naming the step); a writer checks that the folder takes
new files before the first step, not after an hour; and a resume that meets a step which
does not restore (a truncated array file, a missing `_METADATA`) moves it aside to
WORKDIR/checkpoints_corrupt/ and resumes from the newest step that does
(`restore_newest_intact`).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from videofusion_jax import storage
from videofusion_jax.cli import CHECKPOINT, ConfigError
from videofusion_jax.models.execution import VIDEOFUSION_EXECUTION_FIELDS

# Config sections that must match for a checkpoint to load: they fix parameter shapes
# and the meaning of the weights. Training hyper-parameters may change across a resume.
COMPATIBLE_SECTIONS = ("model", "diffusion", "cond")
# ...except the fields that only change how the model runs (remat, dtypes, chunks,
# the attention kernels).
RUNTIME_FIELDS = tuple(f"model.{name}" for name in VIDEOFUSION_EXECUTION_FIELDS)
# Fields added after checkpoints were already written: absent in a saved config means
# this value.
FIELD_DEFAULTS = {
  "model.kind": "videofusion",
  "cond.kind": "none",
  "cond.num_classes": 0,
  "cond.embed_dim": 768,
  "cond.extra_tokens": 4,
  "cond.text_dim": 0,
  "cond.context_dim": 0,
  "cond.time_embed_dim": 0,
}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def differing_fields(saved: dict, config: ml_collections.ConfigDict) -> list[tuple[str, Any, Any]]:
  """(field, saved value, value now) for every differing field of the compatible
  sections; '<absent>' stands for a field one side lacks."""
  now = json.loads(config.to_json())
  diffs = []
  for section in COMPATIBLE_SECTIONS:
    a = _flatten(saved.get(section, {}), f"{section}.")
    b = _flatten(now.get(section, {}), f"{section}.")
    for key, default in FIELD_DEFAULTS.items():
      if key.startswith(f"{section}."):
        a.setdefault(key, default)
        b.setdefault(key, default)
    for key in sorted((set(a) | set(b)) - set(RUNTIME_FIELDS)):
      if a.get(key, "<absent>") != b.get(key, "<absent>"):
        diffs.append((key, a.get(key, "<absent>"), b.get(key, "<absent>")))
  return diffs


def config_differences(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
  """'field: saved -> now' for every differing field of the compatible sections."""
  return [f"{key}: {a} -> {b}" for key, a, b in differing_fields(saved, config)]


class CheckpointError(RuntimeError):
  """A checkpoint folder that cannot be written, a step holding NaN or inf, or no step
  that restores."""

  exit_code = CHECKPOINT


def first_nonfinite(tree) -> str | None:
  """The path of the first floating-point array of `tree` holding a NaN or an inf, or
  None.

  Arrays this process holds whole are checked on the host: one pass over the bytes a
  save copies to the host anyway, and no compile (a jitted check over a model's ~1,000
  arrays took 7 s to compile on a CPU, per tree structure). Arrays sharded over several
  hosts go through one jitted reduction, so every host reaches the same answer.
  """
  paths, global_leaves, global_paths = [], [], []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)):
      continue
    name = jax.tree_util.keystr(path)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      global_paths.append(name)
      global_leaves.append(leaf)
    elif not np.isfinite(np.asarray(leaf)).all():
      paths.append(name)
  if global_leaves:
    finite = jax.device_get(_finite_per_array(global_leaves))
    paths += [p for p, ok in zip(global_paths, finite) if not ok]
  return paths[0] if paths else None


@jax.jit
def _finite_per_array(leaves):
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])


def check_writable(directory: epath.Path) -> None:
  """Create and remove a folder in `directory`, as orbax will for every save, so an
  unwritable folder fails now, in one line, and not in orbax's background thread, whose
  error surfaces as a 300 s timeout at the first save. (On GCS, where folders are only
  names, an object is written and deleted instead.)"""
  probe = directory / f".write_check.{os.getpid()}"
  if storage.is_remote(directory):
    with storage.access_errors(directory, "checkpoint folder"):
      try:
        probe.write_bytes(b"")
        probe.unlink()
      except OSError as e:
        raise CheckpointError(
          f"checkpoint folder {directory} is not writable: {' '.join(str(e).split())[:300]}"
        ) from None
    return
  try:
    directory.mkdir(parents=True, exist_ok=True)
    probe.mkdir()
    probe.rmdir()
  except OSError as e:
    raise CheckpointError(
      f"checkpoint folder {directory} is not writable: [Errno "
      f"{e.errno}] {os.strerror(e.errno or errno.EIO)}"
    ) from None


def _cause(error: BaseException) -> str:
  """An exception as one short line: its type and the first line of its message."""
  text = str(error).strip().splitlines()
  line = text[0] if text else ""
  return f"{type(error).__name__}: {line[:300]}"


# Data fields that fix the shape of what a run trains on: a resume that changes one
# would train the saved model on other shapes from then on. Other data fields (the
# path, the stride, workers) may change with a warning.
DATA_SHAPE_FIELDS = ("data.num_frames", "data.image_size", "data.channels")


def check_data_section(
  saved: dict, config: ml_collections.ConfigDict, step: int, directory: Path | epath.Path
) -> None:
  """Refuse a resume that changes a `DATA_SHAPE_FIELDS` field; log the other changes."""
  before = _flatten(saved.get("data", {}), "data.")
  now = _flatten(json.loads(config.to_json()).get("data", {}), "data.")
  changed = [
    f"{k}: {before.get(k, '<absent>')} -> {now.get(k, '<absent>')}"
    for k in sorted(set(before) | set(now))
    if before.get(k) != now.get(k)
  ]
  refused = [c for c in changed if c.split(":")[0] in DATA_SHAPE_FIELDS]
  if refused:
    raise ConfigError(
      f"{directory} holds step {step} trained on other clip shapes: "
      f"{'; '.join(refused)}. Use a new --workdir or the old data settings."
    )
  if changed:
    logging.warning("Resuming step %d with changed data settings: %s", step, "; ".join(changed))


# A reader creates and deletes nothing; no count to keep and no saves to space (orbax
# would set both itself, warning each time).
_READER_OPTIONS = dict(
  read_only=True,
  create=False,
  cleanup_tmp_directories=False,
  max_to_keep=None,
  save_interval_steps=0,
)


class Checkpoints:
  """Save and restore (state, ema, data iterator, config) by step."""

  def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3, read_only: bool = False):
    """`read_only` for every reader (sampling, evaluation, diagnostics): it creates and
    deletes nothing. A writer (the training run, the only one per workdir) removes the
    temporary directories of unfinished saves when it opens the folder; a reader doing
    that would delete the save a training run is writing at that moment (seen: sampling
    a workdir while its run saved at SIGTERM crashed the save)."""
    # epath: a gs:// workdir stays one (orbax and tensorstore write to GCS natively).
    self.directory = storage.absolute(workdir) / "checkpoints"
    if not read_only:
      check_writable(self.directory)
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        **(
          _READER_OPTIONS
          if read_only
          else dict(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
        )
      ),
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def latest_step_or_raise(self, how_to_make: str) -> int:
    """The latest step; without one, FileNotFoundError in one line naming this folder
    and `how_to_make` (what writes a checkpoint there), for the readers that need one."""
    step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}: {how_to_make}")
    return step

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(
    self,
    step: int,
    state,
    ema,
    data_iter,
    config: ml_collections.ConfigDict,
    *,
    force: bool = False,
  ) -> bool:
    """Save step `step` (asynchronously); refuses, before writing anything, a state or
    EMA holding a NaN or inf."""
    for name, tree in (("state", state), ("ema", ema)):
      bad = first_nonfinite(tree)
      if bad is not None:
        raise CheckpointError(
          f"not saving step {step} to {self.directory}: {name}{bad} holds NaN or inf"
        )
    args = dict(
      state=ocp.args.StandardSave(state),
      ema=ocp.args.StandardSave(ema),
      config=ocp.args.JsonSave(json.loads(config.to_json())),
    )
    if data_iter is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

  def saved_config(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
      "config"
    ]

  def check_compatible(
    self, step: int, config: ml_collections.ConfigDict, saved: dict | None = None
  ) -> None:
    """Refuse `config` if it differs from step `step`'s (or `saved`) on a field that
    fixes the parameters' shapes or meaning."""
    diffs = config_differences(self.saved_config(step) if saved is None else saved, config)
    if diffs:
      raise ConfigError(
        f"{self.directory} holds a checkpoint (step {step}) from an incompatible config; "
        f"differing fields: {'; '.join(diffs)}. Use a new --workdir or the old config."
      )

  def restore(self, step: int, *, state=None, ema=None, data_iter=None) -> dict:
    """Restore the items given targets for: `state`/`ema` are abstract trees (shapes,
    dtypes, shardings); `data_iter` is moved to its saved position in place."""
    args = {}
    if state is not None:
      args["state"] = ocp.args.StandardRestore(state)
    if ema is not None:
      args["ema"] = ocp.args.StandardRestore(ema)
    if data_iter is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(**args))
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(
        f"cannot restore step {step} from {self.directory}: the saved "
        f"trees do not match this model ({type(e).__name__}: {e})"
      ) from e
    restored = {k: out[k] for k in args if k != "data"}
    for name, tree in restored.items():
      bad = first_nonfinite(tree)
      if bad is not None:
        raise CheckpointError(
          f"step {step} in {self.directory} holds NaN or inf "
          f"({name}{bad}): it is not a usable checkpoint"
        )
    return restored

  def restore_newest_intact(
    self, config: ml_collections.ConfigDict, **targets
  ) -> tuple[int | None, dict]:
    """Restore the newest step that restores whole (`restore`'s targets), moving each
    newer step that does not to WORKDIR/checkpoints_corrupt/ with one line naming it and
    why. -> (step, restored items), or (None, {}) for an empty folder.

    A step whose saved config differs from `config` is the user's change, not damage:
    `check_compatible`'s error is raised as it is. Nothing is moved unless an older
    step restores, so a folder that no step of restores (say, a model the code can no
    longer read) is left as it was, and the error lists every step tried.
    """
    tried = []
    for step in reversed(self.all_steps()):
      try:
        saved = self.saved_config(step)
      except Exception as e:  # any failure to read is this step's damage
        tried.append((step, _cause(e)))
        continue
      self.check_compatible(step, config, saved)
      check_data_section(saved, config, step, self.directory)
      try:
        restored = self.restore(step, **targets)
      except Exception as e:  # noqa: BLE001
        tried.append((step, _cause(e)))
        continue
      for bad_step, cause in tried:
        self._move_aside(bad_step, cause)
      return step, restored
    if tried:
      raise CheckpointError(
        f"no checkpoint in {self.directory} restores: "
        + "; ".join(f"step {s}: {cause}" for s, cause in tried)
      )
    return None, {}

  def _move_aside(self, step: int, cause: str) -> None:
    aside = self.directory.parent / "checkpoints_corrupt"
    aside.mkdir(exist_ok=True)
    target = aside / str(step)
    n = 1
    while target.exists():  # the same step went bad before
      target, n = aside / f"{step}.{n}", n + 1
    if jax.process_index() == 0:
      storage.move_tree(self.directory / str(step), target)
    if jax.process_count() > 1:  # every host sees the move before reading the folder
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"checkpoint_moved_aside_{step}")
    logging.warning("checkpoint step %d does not restore (%s): moved to %s", step, cause, target)
    self.manager.reload()

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def __enter__(self) -> "Checkpoints":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()  # waits for saves in flight: a reader's `with` never leaves one behind
