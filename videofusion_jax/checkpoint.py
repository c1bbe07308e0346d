"""Checkpoints in WORKDIR/checkpoints through an orbax `CheckpointManager`.

One step directory holds the train state (model + optimizer, `nnx.State`), the EMA
parameters, the grain iterator state and the config as JSON. orbax writes each step to
a temporary directory and renames it when complete, so a save killed midway is never
the one resumed from. Restores go onto the shardings of the target the caller builds
(`jax.eval_shape` of the init function), so a run can resume on another mesh.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grain
import ml_collections
import orbax.checkpoint as ocp

from videofusion_jax.models.execution import VIDEOFUSION_EXECUTION_FIELDS

# Config sections that must match for a checkpoint to load: they fix parameter shapes
# and the meaning of the weights. Training hyper-parameters may change across a resume.
COMPATIBLE_SECTIONS = ("model", "diffusion", "cond")
# ...except the fields that only change how the model runs (remat, dtypes, chunks,
# the attention kernels).
RUNTIME_FIELDS = tuple(f"model.{name}" for name in VIDEOFUSION_EXECUTION_FIELDS)
# Fields added after checkpoints were already written: absent in a saved config means
# this value.
FIELD_DEFAULTS = {"model.kind": "videofusion", "cond.kind": "none", "cond.num_classes": 0,
                  "cond.embed_dim": 768, "cond.extra_tokens": 4, "cond.text_dim": 0,
                  "cond.context_dim": 0, "cond.time_embed_dim": 0}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def config_differences(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
  """'field: saved -> now' for every differing field of the compatible sections."""
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
        diffs.append(f"{key}: {a.get(key, '<absent>')} -> {b.get(key, '<absent>')}")
  return diffs


# A reader creates and deletes nothing; no count to keep and no saves to space (orbax
# would set both itself, warning each time).
_READER_OPTIONS = dict(read_only=True, create=False, cleanup_tmp_directories=False,
                       max_to_keep=None, save_interval_steps=0)


class Checkpoints:
  """Save and restore (state, ema, data iterator, config) by step."""

  def __init__(self, workdir: str | Path, *, max_to_keep: int = 3, read_only: bool = False):
    """`read_only` for every reader (sampling, evaluation, diagnostics): it creates and
    deletes nothing. A writer (the training run, the only one per workdir) removes the
    temporary directories of unfinished saves when it opens the folder; a reader doing
    that would delete the save a training run is writing at that moment (seen: sampling
    a workdir while its run saved at SIGTERM crashed the save)."""
    self.directory = Path(workdir).absolute() / "checkpoints"
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(**(_READER_OPTIONS if read_only else dict(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True))))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, ema, data_iter, config: ml_collections.ConfigDict,
           *, force: bool = False) -> bool:
    args = dict(state=ocp.args.StandardSave(state), ema=ocp.args.StandardSave(ema),
                config=ocp.args.JsonSave(json.loads(config.to_json())))
    if data_iter is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

  def saved_config(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))["config"]

  def check_compatible(self, step: int, config: ml_collections.ConfigDict) -> None:
    diffs = config_differences(self.saved_config(step), config)
    if diffs:
      raise ValueError(
          f"{self.directory} holds a checkpoint (step {step}) from an incompatible config; "
          f"differing fields: {'; '.join(diffs)}. Use a new --workdir or the old config.")

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
      raise ValueError(f"cannot restore step {step} from {self.directory}: the saved "
                       f"trees do not match this model ({type(e).__name__}: {e})") from e
    return {k: out[k] for k in args if k != "data"}

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

