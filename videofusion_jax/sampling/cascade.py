"""The cascade: base videos, then the super-resolution stage.

`SuperResStage` holds the SR model of DIR (models/superres.py) and super-resolves base
videos batch by batch; `Pipeline.from_workdir(W, superres_workdir=DIR)` runs it after
its base model, and the sample CLI's cascade mode (`sample.py --superres_workdir=DIR`)
writes that Pipeline's videos to WORKDIR/samples/ and WORKDIR/samples_<H>/ (e.g.
samples_128/). `superres_batches` is the stage alone, for any low-res videos.

DIR is an SR training workdir or a converted Karlo SR folder (`convert unclip`'s
OUT/super_res_first, with OUT/super_res_last for the last step; superres_folders.py).
The SR stage runs with its own experiment config (`--superres_config`, or the one saved
with DIR's checkpoint; for a converted folder, the folder's network with the sampler
settings of `--superres_config` or of the base config): its schedule, DDIM steps, noise
mode and lam, and its fixed noise-augmentation level `sample.aug_level`. SR video k
takes its noise keys from the SR config's seeds (`noise_sharing.video_keys`) and its
augmentation noise from `fold_in(base_key_k, AUG_NOISE_STREAM)`, so it is the same video
whatever the batch size. (A converted folder without `--superres_config` takes the
base config's seeds: `--base_seed` / `--residual_seed` then seed both stages.)
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

from videofusion_jax import diffusion, parallel
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


def superres_settings(
  superres_workdir: str | Path,
  superres_config: ml_collections.ConfigDict | None,
  base_config: ml_collections.ConfigDict,
  *,
  guidance_scale: float | None = None,
) -> ml_collections.ConfigDict:
  """The SR stage's config for a cascade over `base_config`'s videos, checked against
  it before any weights load: `superres_stage_config`, `guidance_scale` (the CLI's
  `--superres_guidance_scale`) replacing its `sample.guidance_scale`."""
  sr_config = superres_stage_config(superres_workdir, superres_config, base_config)
  if guidance_scale is not None:
    with sr_config.unlocked():
      sr_config.sample.guidance_scale = guidance_scale
  check_stages(base_config, sr_config)
  condition_of(model_spec(sr_config).config)  # validates the SR condition section
  return sr_config


def superres_inputs(sr_config: ml_collections.ConfigDict, low_res, condition: dict | None = None):
  """(base_keys, residual_keys, cond) of the SR stage on `low_res` (K, N, h, w, C) in
  [-1, 1]: video k's noise keys from the SR config's seeds, its augmentation noise from
  `fold_in(base_key_k, AUG_NOISE_STREAM)`, its low-res frames and `condition[k]`."""
  sr = model_spec(sr_config).config
  k, n, h, w, c = low_res.shape
  if (h, w, c) != (sr.low_res_size, sr.low_res_size, sr.channels):
    raise ValueError(
      f"low-res videos of shape {low_res.shape}; the SR model takes frames "
      f"of {sr.low_res_size}x{sr.low_res_size}x{sr.channels}"
    )
  if condition_of(sr).enabled and condition is None:
    raise ValueError(
      f"the SR model is conditioned (cond.kind={condition_of(sr).kind!r}); "
      "pass its condition (cascade.superres_conditions)"
    )
  s = sr_config.sample
  base_keys = video_keys(s.base_seed, 0, k)
  residual_keys = video_keys(s.residual_seed, 0, k)
  aug_noise = jax.vmap(
    lambda key: jax.random.normal(jax.random.fold_in(key, AUG_NOISE_STREAM), low_res.shape[1:])
  )(base_keys)
  cond = {
    "low_res": jnp.asarray(low_res, jnp.float32),
    "aug_level": jnp.full((k,), sr.sample_aug_level, jnp.float32),
    "aug_noise": aug_noise,
    **(condition or {}),
  }
  return base_keys, residual_keys, cond


class SuperResStage:
  """DIR's SR model, loaded once onto `mesh` (default: one device), its jitted sampler
  kept per (batch size, sampler settings): the cascade's second stage, for the sample
  CLI and `Pipeline` alike.

  `sr_config` (from `superres_settings` or `superres_stage_config`) is the stage's
  config; `follows_base`: it was made from the base config (a converted folder without
  `--superres_config`), so `config_for` remakes it from each call's base config, seeds
  included, as the CLI does from its flags.
  """

  def __init__(
    self,
    sr_config: ml_collections.ConfigDict,
    superres_workdir: str | Path,
    *,
    follows_base: bool = False,
    mesh=None,
    rules=None,
  ):
    self.config, self.workdir, self.follows_base = sr_config, superres_workdir, follows_base
    self.spec = model_spec(sr_config)
    if mesh is None:
      mesh = parallel.make_mesh(sr_config.mesh, jax.devices()[:1])
    self.mesh = mesh
    self.rules = rules if rules is not None else parallel.rules_from_config(sr_config.mesh.rules)
    self.schedule = diffusion.make_schedule(
      sr_config.diffusion.schedule, sr_config.diffusion.num_timesteps
    )
    self.graphdef, self.state = superres_params(
      sr_config, superres_workdir, mesh=self.mesh, rules=self.rules
    )
    self._samplers = {}  # (batch size, SamplerConfig) -> VideoSampler

  @property
  def image_size(self) -> int:
    return int(self.config.data.image_size)

  def config_for(self, base_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The SR config of a cascade whose base stage ran with `base_config`."""
    if not self.follows_base:
      return self.config
    guidance = self.config.sample.guidance_scale
    sr_config = superres_stage_config(self.workdir, None, base_config)
    with sr_config.unlocked():
      sr_config.sample.guidance_scale = guidance  # --superres_guidance_scale, if given
    return sr_config

  def batches(
    self,
    low_res: np.ndarray,
    *,
    sr_config: ml_collections.ConfigDict | None = None,
    condition: dict | None = None,
    progress=None,
  ) -> Iterator[np.ndarray]:
    """Super-resolve `low_res` (K, N, h, w, C) in [-1, 1] under `sr_config` (default:
    the stage's): batches (b, N, H, W, C) in [-1, 1]. A conditioned SR model takes
    `condition` (`superres_conditions`) and is guided with its `sample.guidance_scale`."""
    sr_config = sr_config or self.config
    base_keys, residual_keys, cond = superres_inputs(sr_config, low_res, condition)
    k, n = low_res.shape[:2]
    settings = sampler_config(sr_config)
    key = (min(sr_config.sample.batch_size, k), n, settings)
    if key not in self._samplers:
      self._samplers[key] = VideoSampler(
        self.graphdef,
        self.spec.config,
        num_frames=n,
        image_size=self.image_size,
        batch_size=key[0],
        config=settings,
        mesh=self.mesh,
        rules=self.rules,
      )
    return self._samplers[key].keyed_batches(
      self.state, self.schedule, base_keys, residual_keys, cond=cond, progress=progress
    )


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
  `sr_config.sample.guidance_scale`. `SuperResStage` keeps the model for more calls."""
  superres_inputs(sr_config, low_res, condition)  # checked now, before any weights load
  stage = SuperResStage(sr_config, superres_workdir, mesh=mesh, rules=rules)
  return stage.batches(low_res, condition=condition, progress=_progress("super-resolution"))


def _progress(what: str):
  return Progress(what, unit="videos").update
