"""The cascade: base videos, then the super-resolution stage, both resolutions on disk.

`cascade(config, workdir, superres_workdir)` (`sample.py --superres_workdir=DIR`) samples
`config.sample.num_videos` videos with the base model of WORKDIR (written to
WORKDIR/samples/ as `sample.py` writes them), then super-resolves them with the SR model
of DIR (models/superres.py) and writes WORKDIR/samples_<H>/ (e.g. samples_128/).

DIR is an SR training workdir or a converted Karlo SR folder (`convert unclip`'s
OUT/super_res_first, with OUT/super_res_last for the last step; superres_folders.py).
The SR stage runs with its own experiment config (`--superres_config`, or the one saved
with DIR's checkpoint; for a converted folder, the folder's network with the sampler
settings of `--superres_config` or of the base config): its schedule, DDIM steps, noise
mode and lam, and its fixed noise-augmentation level `sample.aug_level`. SR video k
takes its noise keys from the SR config's seeds (`noise_sharing.video_keys`) and its
augmentation noise from `fold_in(base_key_k, AUG_NOISE_STREAM)`, so it is the same video
whatever the batch size.
The base videos pass between the stages as float arrays, never through a video file.

Guidance of the SR stage: an SR model trained with a condition (`cond`, as
configs/demo_class_sr.py) is guided with its config's `sample.guidance_scale` (or
`--superres_guidance_scale`), the unconditional branch being its learned null. Video
k's SR condition is the base video k's own (its class id, its prompt's image
embedding, `drop` for an empty prompt) when the SR model reads the same inputs as the
base model; otherwise it comes from the base config's `sample` section (`--class_id`,
prompts, `sample.image_embeds`) as for any conditioned model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from videofusion_jax import diffusion, parallel, storage
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data.conditions import check_class_ids
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.conditioning import ConditionConfig
from videofusion_jax.models.from_config import condition_of, model_spec
from videofusion_jax.progress import Progress
from videofusion_jax.sampling import superres_folders
from videofusion_jax.sampling.conditions import sample_conditions
from videofusion_jax.sampling.generate import (
  VideoSampler,
  load_ema_params,
  sampler_config,
  write_samples,
)

AUG_NOISE_STREAM = 0x5352  # fold_in data of the augmentation-noise keys ("SR")


def superres_config_from_workdir(superres_workdir: str | Path) -> ml_collections.ConfigDict:
  """The experiment config saved with the latest checkpoint in `superres_workdir`."""
  with Checkpoints(superres_workdir, read_only=True) as ckpt:
    step = ckpt.latest_step_or_raise(
      f"train the SR model there first (--superres_workdir={superres_workdir}) "
      "or pass --superres_config"
    )
    return ml_collections.ConfigDict(ckpt.saved_config(step))


def superres_stage_config(
  superres_workdir: str | Path,
  superres_config: ml_collections.ConfigDict | None = None,
  base_config: ml_collections.ConfigDict | None = None,
) -> ml_collections.ConfigDict:
  """The SR experiment config for DIR, either kind of folder (superres_folders.py)."""
  kind, folder = superres_folders.folder_kind(superres_workdir)
  if kind == superres_folders.TRAINING:
    return superres_config or superres_config_from_workdir(folder)
  if superres_config is None and base_config is None:
    raise ValueError(
      f"--superres_workdir={superres_workdir} is a converted SR folder; its "
      "sampler settings come from --superres_config or the base config"
    )
  return superres_folders.converted_config(
    folder, superres_config or base_config, from_base=superres_config is None
  )


def superres_stage(
  superres_workdir: str | Path,
  superres_config: ml_collections.ConfigDict | None = None,
  base_config: ml_collections.ConfigDict | None = None,
  *,
  mesh=None,
  rules=None,
):
  """(sr_config, graphdef, state) of DIR, either kind of folder."""
  sr_config = superres_stage_config(superres_workdir, superres_config, base_config)
  return (sr_config, *superres_params(sr_config, superres_workdir, mesh=mesh, rules=rules))


def superres_params(
  sr_config: ml_collections.ConfigDict, superres_workdir: str | Path, *, mesh=None, rules=None
):
  """(graphdef, state) of DIR's model under `sr_config`: the EMA parameters of a training
  workdir's latest checkpoint, or a converted folder's weights (no orbax training
  checkpoint; Karlo's super_res_first/last pair when both are there)."""
  spec = model_spec(sr_config)
  kind, folder = superres_folders.folder_kind(superres_workdir)
  if kind == superres_folders.TRAINING:
    return load_ema_params(spec, sr_config, str(folder), mesh, rules)
  return superres_folders.load_converted_stage(sr_config, spec.config, folder, mesh, rules)


def check_stages(config: ml_collections.ConfigDict, sr_config: ml_collections.ConfigDict):
  """The base model's frames must be what the SR model takes as its condition."""
  if sr_config.model.kind != "superres":
    raise ValueError(
      f"the super-resolution config has model.kind={sr_config.model.kind!r}; expected 'superres'"
    )
  base, sr = config.data, sr_config.data
  if base.image_size != sr.low_res_size:
    raise ValueError(
      f"base data.image_size={base.image_size} but the SR model takes "
      f"data.low_res_size={sr.low_res_size} frames"
    )
  if base.channels != sr.channels:
    raise ValueError(
      f"base data.channels={base.channels} but the SR model has data.channels={sr.channels}"
    )


def _sampler(
  config, spec, graphdef, num_frames: int, image_size: int, num_videos: int, mesh, rules
) -> VideoSampler:
  s = config.sample
  return VideoSampler(
    graphdef,
    spec.config,
    num_frames=num_frames,
    image_size=image_size,
    batch_size=min(s.batch_size, num_videos),
    config=sampler_config(config),
    mesh=mesh,
    rules=rules,
  )


def superres_conditions(
  config: ml_collections.ConfigDict,
  sr_cond: ConditionConfig,
  base_cond: dict | None,
  num_videos: int,
) -> dict | None:
  """The SR stage's condition inputs (K, ...) for the base videos made with `base_cond`
  (None for an unconditioned SR model): the base videos' own entries when they hold
  every input the SR model reads, else `config.sample`'s (sample_conditions)."""
  if not sr_cond.enabled:
    return None
  names = sr_cond.input_names()
  if base_cond is None or any(n not in base_cond for n in names):
    return sample_conditions(config, sr_cond, num_videos)
  out = {n: np.asarray(base_cond[n]) for n in names + ("drop",) if n in base_cond}
  if sr_cond.kind == "class":
    check_class_ids(out["class_id"], sr_cond.num_classes, "the base videos' class_id (SR)")
  elif out["image_embed"].shape[1:] != (sr_cond.embed_dim,):
    raise ValueError(
      f"the base videos' image embeddings have shape "
      f"{out['image_embed'].shape}; the SR model takes cond.embed_dim="
      f"{sr_cond.embed_dim}"
    )
  return out


def superres_batches(
  sr_config: ml_collections.ConfigDict,
  superres_workdir: str | Path,
  low_res: np.ndarray,
  *,
  condition: dict | None = None,
  mesh=None,
  rules=None,
) -> Iterator[np.ndarray]:
  """Super-resolve `low_res` (K, N, h, w, C) in [-1, 1] with DIR's model run under
  `sr_config` (from `superres_stage_config`): batches (b, N, H, W, C). A conditioned SR
  model takes `condition` (from `superres_conditions`) and is guided with
  `sr_config.sample.guidance_scale`."""
  spec = model_spec(sr_config)
  sr = spec.config
  k, n, h, w, c = low_res.shape
  if (h, w, c) != (sr.low_res_size, sr.low_res_size, sr.channels):
    raise ValueError(
      f"low-res videos of shape {low_res.shape}; the SR model takes frames "
      f"of {sr.low_res_size}x{sr.low_res_size}x{sr.channels}"
    )
  if mesh is None:
    mesh = parallel.make_mesh(sr_config.mesh, jax.devices()[:1])
    rules = parallel.rules_from_config(sr_config.mesh.rules)
  schedule = diffusion.make_schedule(
    sr_config.diffusion.schedule, sr_config.diffusion.num_timesteps
  )
  graphdef, state = superres_params(sr_config, superres_workdir, mesh=mesh, rules=rules)
  s = sr_config.sample
  sampler = _sampler(sr_config, spec, graphdef, n, sr.image_size, k, mesh, rules)
  base_keys = video_keys(s.base_seed, 0, k)
  residual_keys = video_keys(s.residual_seed, 0, k)
  aug_noise = jax.vmap(
    lambda key: jax.random.normal(jax.random.fold_in(key, AUG_NOISE_STREAM), low_res.shape[1:])
  )(base_keys)
  if condition_of(sr).enabled and condition is None:
    raise ValueError(
      f"the SR model is conditioned (cond.kind={condition_of(sr).kind!r}); "
      "pass its condition (cascade.superres_conditions)"
    )
  cond = {
    "low_res": jnp.asarray(low_res, jnp.float32),
    "aug_level": jnp.full((k,), sr.sample_aug_level, jnp.float32),
    "aug_noise": aug_noise,
    **(condition or {}),
  }
  yield from sampler.keyed_batches(
    state, schedule, base_keys, residual_keys, cond=cond, progress=_progress("super-resolution")
  )


def base_videos(
  config: ml_collections.ConfigDict, workdir: str | Path, *, cond=None, mesh=None, rules=None
) -> np.ndarray:
  """`config.sample.num_videos` videos (K, N, h, w, C) in [-1, 1] from WORKDIR's model,
  video k conditioned on `cond[k]` (from `base_conditions`; None: unconditioned)."""
  spec = model_spec(config)
  if mesh is None:
    mesh = parallel.make_mesh(config.mesh)
    rules = parallel.rules_from_config(config.mesh.rules)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  graphdef, state = load_ema_params(spec, config, str(workdir), mesh, rules)
  s = config.sample
  sampler = _sampler(
    config,
    spec,
    graphdef,
    config.data.num_frames,
    config.data.image_size,
    s.num_videos,
    mesh,
    rules,
  )
  batches = sampler.batches(
    state,
    schedule,
    num_videos=s.num_videos,
    base_seed=s.base_seed,
    residual_seed=s.residual_seed,
    cond=cond,
    progress=_progress("base videos"),
  )
  return np.concatenate(list(batches))


def base_conditions(config: ml_collections.ConfigDict) -> dict | None:
  """Each base video's condition inputs (class ids, prompts' embeddings...), or None."""
  cond = condition_of(model_spec(config).config)
  return sample_conditions(config, cond, config.sample.num_videos)


def cascade(
  config: ml_collections.ConfigDict,
  workdir: str,
  superres_workdir: str,
  superres_config: ml_collections.ConfigDict | None = None,
  *,
  superres_guidance_scale: float | None = None,
) -> tuple[list[Path], list[Path]]:
  """Write base samples to WORKDIR/samples and SR samples to WORKDIR/samples_<H>; return
  both lists of paths (an mp4 per video, then the frame strip, as `write_samples`; a gif
  per video is written next to each mp4). `superres_guidance_scale` overrides the SR
  config's `sample.guidance_scale`."""
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  sr_config = superres_stage_config(superres_workdir, superres_config, config)
  if superres_guidance_scale is not None:
    with sr_config.unlocked():
      sr_config.sample.guidance_scale = superres_guidance_scale
  check_stages(config, sr_config)
  sr_cond = condition_of(model_spec(sr_config).config)  # validates before the base stage
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.rules_from_config(config.mesh.rules)
  cond = base_conditions(config)
  sr_condition = superres_conditions(config, sr_cond, cond, config.sample.num_videos)
  low = base_videos(config, workdir, cond=cond, mesh=mesh, rules=rules)
  fps = config.sample.fps
  low_paths = write_samples(
    [low], storage.path(workdir) / "samples", fps=fps, image_size=config.data.image_size
  )
  size = sr_config.data.image_size
  high_paths = write_samples(
    superres_batches(
      sr_config,
      superres_workdir,
      low,
      condition=sr_condition,
      mesh=mesh,
      rules=parallel.rules_from_config(sr_config.mesh.rules),
    ),
    storage.path(workdir) / f"samples_{size}",
    fps=fps,
    image_size=size,
  )
  logging.info("Cascade: %d videos at %d and %d pixels.", len(low), low.shape[2], size)
  return low_paths, high_paths


def _progress(what: str):
  return Progress(what, unit="videos").update
