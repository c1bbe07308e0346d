"""A diffusers scheduler config, kept with a converted U-Net and read as our settings.

A diffusers pipeline folder holds its U-Net in unet/ (or decoder/...) and the schedule
it was trained with in scheduler/scheduler_config.json. `convert diffusers-unet`
records that file, when it sits next to the U-Net folder, in the converted folder's
unet_config.json (`source.scheduler`), so that the U-Net can be sampled as its source
was (`Pipeline.from_converted`). `diffusion_settings` maps it onto our
`diffusion.schedule` / `num_timesteps` / `objective` and the DDIM clipping, and refuses
what the project cannot represent, naming the field and value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

SCHEDULER_CONFIG = Path("scheduler") / "scheduler_config.json"
# diffusers beta_schedule -> ours (diffusion/schedules.py)
BETA_SCHEDULES = {"squaredcos_cap_v2": "cosine", "linear": "linear"}
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v"}


def find_scheduler_config(src: str | Path) -> dict[str, Any] | None:
  """The scheduler config of the pipeline around the U-Net folder SRC
  (SRC/../scheduler/scheduler_config.json, or SRC/scheduler_config.json), or None."""
  src = Path(src)
  for file in (src.parent / SCHEDULER_CONFIG, src / "scheduler_config.json"):
    if file.is_file():
      return {"file": str(file.absolute()), **json.loads(file.read_text())}
  return None


def diffusion_settings(scheduler: Mapping[str, Any], where: str = "scheduler") -> dict[str, Any]:
  """{"schedule", "num_timesteps", "objective", "clip_x0"} of a diffusers scheduler
  config (fields it does not set are left out); ValueError naming `where`'s field and
  value for a schedule or prediction type the project cannot represent."""
  out = {}
  if scheduler.get("trained_betas") is not None:
    raise ValueError(
      f"{where}.trained_betas is set: a schedule of explicit betas is not one the "
      "project can represent (diffusion.schedule is 'cosine' or 'linear')"
    )
  num = scheduler.get("num_train_timesteps")
  if num is not None:
    out["num_timesteps"] = int(num)
  name = _mapped(scheduler, "beta_schedule", BETA_SCHEDULES, where, "our 'cosine' and 'linear'")
  if name is not None:
    out["schedule"] = BETA_SCHEDULES[name]
    if name == "linear":
      _check_linear(scheduler, out.get("num_timesteps", 1000), where)
  prediction = _mapped(scheduler, "prediction_type", PREDICTION_TYPES, where, "eps and v")
  if prediction is not None:
    out["objective"] = PREDICTION_TYPES[prediction]
  if scheduler.get("clip_sample") is not None:
    out["clip_x0"] = bool(scheduler["clip_sample"])
  return out


def _mapped(scheduler: Mapping[str, Any], key: str, ours: Mapping, where: str, what: str):
  """`scheduler[key]` (None if unset); ValueError naming it when `ours` has no match."""
  value = scheduler.get(key)
  if value is not None and value not in ours:
    raise ValueError(
      f"{where}.{key}={value!r} is not one the project can represent (it has "
      f"{sorted(ours)}, {what})"
    )
  return value


def _check_linear(scheduler: Mapping[str, Any], num_timesteps: int, where: str) -> None:
  """Our linear schedule is Ho et al.'s 1e-4 .. 2e-2 at T = 1000, scaled by 1000 / T."""
  scale = 1000 / num_timesteps
  for field, ours in (("beta_start", 1e-4 * scale), ("beta_end", 2e-2 * scale)):
    value = scheduler.get(field)
    if value is not None and abs(float(value) - ours) > 1e-6 * ours:
      raise ValueError(
        f"{where}.{field}={value}: the project's linear schedule has {field}={ours:g} "
        f"at num_train_timesteps={num_timesteps}"
      )
