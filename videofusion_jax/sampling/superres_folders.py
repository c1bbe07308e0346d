"""The two kinds of folder `sample.py --superres_workdir=DIR` takes, read for the cascade.

  training workdir     `python -m videofusion_jax.train --config=configs/ucf101_sr.py`
                       wrote it: DIR/checkpoints/ (orbax; the EMA parameters and the
                       experiment config are restored by cascade.py as for any model)
  converted SR folder  `python -m videofusion_jax.convert unclip` wrote it: OUT/
                       super_res_first/ (or OUT itself), with unet_config.json (its
                       source records low_res_size), params/ and config_snippet.py

A converted folder carries a network, not an experiment: its config here takes the
network, the frame sizes, bicubic upsampling, no augmentation, no condition and the
learned variance from the folder (as `diffusers_unclip.superres_config_for` maps Karlo's
U-Net), the schedule Karlo trained with (cosine, T from
OUT/schedulers/super_res_scheduler.json, else 1000; eps objective), and every sampler
setting (sample.*, diffusion.lam and noise_mode, mesh) from the settings config:
`--superres_config`, or by default the base model's own config. When OUT/super_res_last/
sits next to super_res_first/, the weights are Karlo's pair,
`models/superres_stages.FinalStepSwitch`: super_res_first for every step but the last,
super_res_last for the last, as the unCLIP pipeline runs them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import jax
import ml_collections
from absl import logging
from flax import nnx

from videofusion_jax import parallel, storage
from videofusion_jax.convert.converted import (
  CONFIG_FILE,
  SNIPPET_FILE,
  load_converted,
  load_converted_config,
)
from videofusion_jax.convert.diffusers_unclip import (
  SUMMARY_FILE,
  superres_config_for,
  superres_with_params,
)
from videofusion_jax.convert.folder import PARAMS_DIR, read_converted_config
from videofusion_jax.models.conditioning import ConditionConfig
from videofusion_jax.models.execution import EXECUTION_FIELDS
from videofusion_jax.models.superres import SuperResConfig, unet_fields
from videofusion_jax.models.superres_stages import FinalStepSwitch

TRAINING, CONVERTED = "training", "converted"
FIRST, LAST = "super_res_first", "super_res_last"
SCHEDULER_FILE = Path("schedulers") / "super_res_scheduler.json"
ACCEPTED = (
  f"it must be one of two kinds of folder: an SR training workdir (with "
  f"checkpoints/, from `python -m videofusion_jax.train --config=configs/"
  f"ucf101_sr.py`) or a converted Karlo super-resolution folder (OUT/{FIRST}/ "
  f"with {CONFIG_FILE}, {PARAMS_DIR}/ and {SNIPPET_FILE}, from `python -m "
  f"videofusion_jax.convert unclip --src=PIPELINE_DIR --out=OUT`)"
)


def folder_kind(path: str | Path) -> tuple[str, Path]:
  """(TRAINING or CONVERTED, the folder to read); `convert unclip`'s OUT stands for
  OUT/super_res_first. Anything else raises ValueError naming both kinds."""
  path = storage.path(path)
  if (path / "checkpoints").is_dir():
    return TRAINING, path
  if (path / SUMMARY_FILE).is_file() and (path / FIRST).is_dir():
    path = path / FIRST
  if (path / CONFIG_FILE).is_file() and (path / PARAMS_DIR).is_dir():
    source = read_converted_config(path, CONFIG_FILE, "U-Net", "unclip")["source"]
    if source.get("low_res_size"):
      return CONVERTED, path
    raise ValueError(
      f"--superres_workdir={path} is a converted U-Net but not a "
      f"super-resolution stage ({CONFIG_FILE} records no low_res_size); " + ACCEPTED
    )
  what = "does not exist" if not path.exists() else "holds no SR model"
  raise ValueError(f"--superres_workdir={path} {what}; " + ACCEPTED)


def last_stage_folder(folder: Path) -> Path | None:
  """OUT/super_res_last next to OUT/super_res_first, if the converter wrote it."""
  last = folder.parent / LAST
  if folder.name == LAST or not (last / CONFIG_FILE).is_file():
    return None
  return last


def converted_model(folder: Path) -> SuperResConfig:
  """The SR network of a converted folder, read from its unet_config.json."""
  source = read_converted_config(folder, CONFIG_FILE, "U-Net", "unclip")["source"]
  low = int(source["low_res_size"])
  return superres_config_for(
    load_converted_config(folder),
    image_size=int(source.get("sample_size") or 4 * low),
    low_res_size=low,
  )


def _num_timesteps(folder: Path) -> int:
  file = folder.parent / SCHEDULER_FILE
  if file.is_file():
    return int(json.loads(file.read_text()).get("num_train_timesteps", 1000))
  return 1000


def converted_config(
  folder: Path, settings: ml_collections.ConfigDict, *, from_base: bool = False
) -> ml_collections.ConfigDict:
  """An SR experiment config: the folder's network and schedule, `settings`' sampler.

  `from_base`: `settings` is the base model's config (no `--superres_config`), whose
  learned-range DDPM variance is replaced by fixed_small for an SR net without one.
  """
  sr = converted_model(folder)
  c = copy.deepcopy(settings)
  c.unlock()
  model = ml_collections.ConfigDict(
    dict(
      kind="superres",
      unet=unet_fields(sr.unet),
      upsample=sr.upsample,
      residual_input=sr.residual_input,
      aug_embedding=sr.aug_embedding,
      aug_max_level=sr.aug_max_level,
      learned_variance=sr.learned_variance,
    )
  )
  for name in EXECUTION_FIELDS:
    if name in settings.model and name != "param_dtype":  # the weights stay float32
      model[name] = settings.model[name]
  c.model = model
  c.cond = ml_collections.ConfigDict(dataclasses.asdict(ConditionConfig()))  # Karlo's SR
  c.data.channels, c.data.image_size = sr.channels, sr.image_size
  c.data.low_res_size = sr.low_res_size
  c.sample.aug_level = sr.sample_aug_level
  c.train.sample_every = 0
  schedule = dict(schedule="cosine", num_timesteps=_num_timesteps(folder), objective="eps")
  for name, value in schedule.items():
    if settings.diffusion[name] != value:
      logging.info(
        "Cascade: the converted SR model was trained with diffusion.%s=%r; using it instead of %r.",
        name,
        value,
        settings.diffusion[name],
      )
    c.diffusion[name] = value
  if from_base and not sr.learned_variance and c.sample.ddpm_variance == "learned_range":
    c.sample.ddpm_variance = "fixed_small"
  return c


def load_converted_stage(
  config: ml_collections.ConfigDict,
  spec_config: SuperResConfig,
  folder: Path,
  mesh=None,
  rules=None,
):
  """(graphdef, state) of the converted folder's network(s) on `mesh`: a SuperRes, or
  Karlo's pair as a FinalStepSwitch when OUT/super_res_last/ exists."""
  if mesh is None:
    mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
    rules = parallel.rules_from_config(config.mesh.rules)
  model = superres_with_params(spec_config, load_converted(folder)[1])
  last = last_stage_folder(folder)
  if last is None:
    logging.info("Cascade: %s runs every super-resolution step (no %s/ next to it).", folder, LAST)
  else:
    if converted_model(last) != converted_model(folder):
      raise ValueError(
        f"{last} holds a different network from {folder}; Karlo's "
        f"{FIRST} and {LAST} share one architecture"
      )
    model = FinalStepSwitch(model, superres_with_params(spec_config, load_converted(last)[1]))
    logging.info(
      "Cascade: %s runs every super-resolution step but the last, %s the last.", folder, last
    )
  graphdef, state = nnx.split(model)
  return graphdef, jax.device_put(state, parallel.state_shardings(state, rules, mesh))
