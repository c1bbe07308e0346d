"""Generate videos with a VideoFusion model: one jitted sampler per shape.

The sampler is a pure function of `(state, base_key, residual_key)` closed over the
model's graphdef, the schedule and static settings, so it compiles once per shape and
runs the whole DDIM/DDPM loop as one `lax.scan`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from videofusion_jax import diffusion, parallel, storage
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.from_config import ModelSpec, condition_of, model_spec
from videofusion_jax.models.logical_axes import with_activation_sharding
from videofusion_jax.models.videofusion import needs_centre_frame
from videofusion_jax.progress import Progress
from videofusion_jax.sampling.conditions import read_prompts, sample_conditions

SAMPLERS = ("ddim", "ddpm")
DDPM_VARIANCES = ("fixed_small", "learned_range")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Static sampler settings (the `sample` section of an experiment config)."""

  sampler: str = "ddim"
  num_steps: int = 50
  eta: float = 0.0
  clip_x0: bool = True
  ddpm_variance: str = "fixed_small"
  noise_mode: str = "decomposed"
  # Classifier-free guidance of conditioned models (paper Tables 8-9; 1: conditional only).
  guidance_scale: float = 3.0

  def validate(self, learned_variance: bool) -> None:
    if self.sampler not in SAMPLERS:
      raise ValueError(f"sample.sampler={self.sampler!r}; expected one of {SAMPLERS}")
    if self.ddpm_variance not in DDPM_VARIANCES:
      raise ValueError(
        f"sample.ddpm_variance={self.ddpm_variance!r}; expected one of {DDPM_VARIANCES}"
      )
    if self.ddpm_variance == "learned_range" and not learned_variance:
      raise ValueError(
        "sample.ddpm_variance='learned_range' needs a model with model.learned_variance=True"
      )
    if self.eta < 0:
      raise ValueError(f"sample.eta={self.eta}; expected eta >= 0")


def model_eps_fn(
  model: nnx.Module,
  schedule: diffusion.Schedule,
  *,
  with_variance: bool,
  cond=None,
  guidance_scale: float = 1.0,
  centre_frame=None,
  residual: bool = True,
) -> Callable:
  """Adapt the model to the samplers' `eps_fn(z, t)` interface.

  A model with a `condition` module (models/conditioning.py) is guided: the conditional
  and the unconditional (`drop`) branch run as one batched call per step.
  `centre_frame` and `residual` go to a VideoFusion model as they are (see
  `VideoFusion.__call__`); the centre frame is a per-clip input like the condition, so
  guidance doubles it with the batch.
  """

  def eps_fn(z, t, inputs):
    c, frame = inputs
    extra = {} if residual else {"residual": False}
    if frame is not None:
      extra["centre_frame"] = frame
    out = model(z, t, schedule.alphas_cumprod, cond=c, **extra)
    return (out.eps, out.var_values) if with_variance else out.eps

  if cond is None or getattr(model, "condition", None) is None:
    return lambda z, t: eps_fn(z, t, (cond, centre_frame))
  b = jax.tree.leaves(cond)[0].shape[0]
  keep = dict(cond, drop=jnp.asarray(cond.get("drop", jnp.zeros((b,), bool)), bool))
  null = dict(cond, drop=jnp.ones((b,), bool))
  return diffusion.classifier_free_guidance(
    eps_fn, (keep, centre_frame), (null, centre_frame), guidance_scale
  )


def centre_first(model: nnx.Module, run: Callable, num_frames: int):
  """`run(**model_inputs)`, a whole sampling loop -> its result (a video, or a tuple
  whose first item is the video); once, or, for a VideoFusion conditioned on the clean
  centre frame (`residual_context = "centre_frame"`), twice with the same keys.

  The base generator sees only the centre frame, so the centre's whole trajectory can
  run first with the residual generator skipped; the second run gives the residual
  frames that finished frame as context, while its base calls retrace the same centre
  trajectory (same inputs, same noise). The sampler then costs one extra base call per
  step, and no residual one.
  """
  if not needs_centre_frame(model):
    return run()
  first = run(residual=False)
  video = first[0] if isinstance(first, tuple) else first
  return run(centre_frame=video[:, diffusion.centre_index(num_frames)])


def make_sample_fn(
  graphdef: nnx.GraphDef,
  shape: tuple[int, ...],
  lam: float,
  config: SamplerConfig,
  *,
  batch_sharding=None,
  out_sharding=None,
  activations=None,
) -> Callable:
  """-> jitted `sample_fn(state, schedule, base_key, residual_key, cond=None)`, videos
  (B, N, H, W, C).

  `cond` is the model's condition pytree with batch axis B (or None). The parameters
  stay where `state` lives (e.g. FSDP shards); with `batch_sharding` the per-video keys,
  hence the noise and every activation, are split over the data axes, and
  `out_sharding` (replicated, in `VideoSampler`) lets every process read the videos;
  `activations` (`parallel.activation_shardings`) pins the U-Nets' activations.
  """
  with_variance = config.sampler == "ddpm" and config.ddpm_variance == "learned_range"

  def sample_fn(state, schedule, base_key, residual_key, cond=None):
    if batch_sharding is not None and base_key.ndim == 1:
      base_key, residual_key, cond = jax.lax.with_sharding_constraint(
        (base_key, residual_key, cond), batch_sharding
      )
    model = nnx.merge(graphdef, state).in_compute_dtype()

    def run(**model_inputs):
      eps_fn = model_eps_fn(
        model,
        schedule,
        with_variance=with_variance,
        cond=cond,
        guidance_scale=config.guidance_scale,
        **model_inputs,
      )
      if config.sampler == "ddim":
        return diffusion.ddim_sample(
          eps_fn,
          schedule,
          shape,
          base_key,
          residual_key,
          lam=lam,
          num_steps=config.num_steps,
          eta=config.eta,
          clip_x0=config.clip_x0,
          noise_mode=config.noise_mode,
        )
      return diffusion.ddpm_sample(
        eps_fn,
        schedule,
        shape,
        base_key,
        residual_key,
        lam=lam,
        variance=config.ddpm_variance,
        clip_x0=config.clip_x0,
        noise_mode=config.noise_mode,
      )

    return centre_first(model, run, shape[1])

  return jax.jit(with_activation_sharding(sample_fn, activations), out_shardings=out_sharding)


class VideoSampler:
  """Build the jitted sampler for one video shape once; call it for batch after batch."""

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    model_config,
    *,
    num_frames: int,
    image_size: int,
    batch_size: int,
    config: SamplerConfig,
    mesh=None,
    rules=None,
  ):
    """With `mesh` and `rules` (parallel.py) each batch is split over the data axes."""
    config.validate(model_config.learned_variance)
    if batch_size < 1:
      raise ValueError(f"sample.batch_size={batch_size}; expected >= 1")
    self.shape = (batch_size, num_frames, image_size, image_size, model_config.channels)
    model_config.check_video(self.shape, name="sampled video")
    diffusion.frame_lambdas(num_frames, model_config.lam)  # validates lam and N early
    layout = {}
    if mesh is not None:
      layout = dict(
        batch_sharding=parallel.batch_sharding(batch_size, rules, mesh),
        out_sharding=parallel.replicated(mesh),
        activations=parallel.activation_shardings(rules, mesh),
      )
    self.sample_fn = make_sample_fn(graphdef, self.shape, model_config.lam, config, **layout)

  def batches(
    self,
    state: nnx.State,
    schedule: diffusion.Schedule,
    *,
    num_videos: int,
    base_seed: int,
    residual_seed: int,
    cond=None,
    progress: Callable | None = None,
  ):
    """Yield batches of videos (b, N, H, W, C) in [-1, 1], `num_videos` in all.

    Video k draws its noise from its own keys, `fold_in(key(base_seed), k)` and
    `fold_in(key(residual_seed), k)` (`noise_sharing.video_keys`): it is the same video
    whatever the batch size, and the same base seed gives the same base noise, hence
    the same content, whatever the residual seed.
    """
    if num_videos < 1:
      raise ValueError(f"num_videos={num_videos}; expected >= 1")
    yield from self.keyed_batches(
      state,
      schedule,
      video_keys(base_seed, 0, num_videos),
      video_keys(residual_seed, 0, num_videos),
      cond=cond,
      progress=progress,
    )

  def keyed_batches(
    self,
    state: nnx.State,
    schedule: diffusion.Schedule,
    base_keys,
    residual_keys,
    cond=None,
    progress: Callable | None = None,
  ):
    """Yield batches of videos, video k from (base_keys[k], residual_keys[k]), (K,) each,
    and condition `cond[k]` (a pytree of (K, ...) arrays, or None).

    The last batch is padded with copies of the last video's inputs (computed, not
    returned).
    """
    total, size = base_keys.shape[0], self.shape[0]
    if residual_keys.shape != base_keys.shape or base_keys.ndim != 1:
      raise ValueError(
        f"base_keys {base_keys.shape} and residual_keys "
        f"{residual_keys.shape}; expected two (K,) key arrays"
      )
    for path, leaf in jax.tree_util.tree_leaves_with_path(cond):
      if np.shape(leaf)[:1] != (total,):
        raise ValueError(
          f"condition {jax.tree_util.keystr(path)} has shape "
          f"{np.shape(leaf)}; expected one entry per video ({total}, ...)"
        )
    for done, take, idx in padded_batches(total, size):
      batch_cond = None if cond is None else jax.tree.map(lambda c: jnp.asarray(c)[idx], cond)
      videos = self.sample_fn(state, schedule, base_keys[idx], residual_keys[idx], batch_cond)
      if progress is not None:
        progress(done + take, total)
      yield jax.device_get(videos[:take])


def padded_batches(total: int, size: int):
  """(done, take, idx) per batch of `size` over `total` items: `idx` (size,) int32 are
  items done..done+take-1, the last batch padded with copies of the last item, so that
  every call of a jitted sampler has one shape (one compile)."""
  for done in range(0, total, size):
    take = min(size, total - done)
    yield done, take, jnp.asarray(np.minimum(np.arange(done, done + size), total - 1), jnp.int32)


def sampler_config(config: ml_collections.ConfigDict) -> SamplerConfig:
  s = config.sample
  return SamplerConfig(
    sampler=s.sampler,
    num_steps=s.num_steps,
    eta=s.eta,
    clip_x0=s.clip_x0,
    ddpm_variance=s.ddpm_variance,
    noise_mode=config.diffusion.noise_mode,
    guidance_scale=s.guidance_scale,
  )


def write_samples(batches, out_dir: Path, *, fps: int, image_size: int) -> list[Path]:
  """Write each video as mp4 + gif and all of them as one strip.png; return the paths.
  A batch is floats in [-1, 1] (a sampler's) or uint8 (a `Pipeline` call's).

  Every process runs the sampler (it is one computation over the mesh); process 0
  writes, the others return [].
  """
  if jax.process_index() != 0:
    for _ in batches:
      pass
    return []
  written, videos = [], []
  for batch in batches:
    batch = np.asarray(batch)
    for video in batch if batch.dtype == np.uint8 else video_io.to_uint8(batch):
      name = f"video_{len(videos):03d}"
      written.append(video_io.write_mp4(out_dir / f"{name}.mp4", video, fps=fps))
      video_io.write_gif(out_dir / f"{name}.gif", video, fps=fps)
      videos.append(video)
  scale = max(1, 64 // image_size)
  written.append(
    video_io.write_png(out_dir / "strip.png", video_io.frame_strip(np.stack(videos), scale=scale))
  )
  return written


def load_ema_params(
  spec: ModelSpec, config: ml_collections.ConfigDict, workdir: str, mesh=None, rules=None
):
  """(graphdef, EMA parameters) of the latest checkpoint in WORKDIR.

  The parameters land on their shardings over `mesh` (by default one device), so a
  model saved on any mesh samples on the current one. A WORKDIR without a checkpoint
  (a typo, a run not started) is an error unless `sample.allow_untrained` asks for a
  freshly initialised model (pipeline checks: its videos are noise).
  """
  if mesh is None:
    mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
    rules = parallel.rules_from_config(config.mesh.rules)
  create = lambda: spec.build(config.seed)
  graphdef, abstract = nnx.split(nnx.eval_shape(create))
  shardings = parallel.state_shardings(abstract, rules, mesh)
  with Checkpoints(workdir, read_only=True) as ckpt:
    if ckpt.latest_step() is None and config.sample.allow_untrained:
      logging.warning(
        "No checkpoint in %s: sampling from freshly initialised weights "
        "(seed %d, sample.allow_untrained), so the videos will look like "
        "noise.",
        ckpt.directory,
        config.seed,
      )
      return graphdef, jax.device_put(nnx.state(create()), shardings)
    step = ckpt.latest_step_or_raise(
      "train there first (python -m videofusion_jax.train --config=... "
      f"--workdir={workdir}), or set --config.sample.allow_untrained=True to use "
      "freshly initialised weights (their videos are noise)"
    )
    ckpt.check_compatible(step, config)
    logging.info("Sampling with the EMA parameters of step %d in %s.", step, ckpt.directory)
    target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    return graphdef, ckpt.restore(step, ema=target)["ema"]


def sample(config: ml_collections.ConfigDict, workdir: str) -> list[Path]:
  """Generate `config.sample.num_videos` videos into WORKDIR/samples; return the paths."""
  parallel.maybe_initialize_distributed(config.distributed)  # before any device use
  storage.check_reachable(workdir, "--workdir")  # gs://: no bucket, no credentials
  spec = model_spec(config)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  mesh = parallel.make_mesh(config.mesh)
  rules = parallel.rules_from_config(config.mesh.rules)
  graphdef, state = load_ema_params(spec, config, workdir, mesh, rules)
  s = config.sample
  sampler = VideoSampler(
    graphdef,
    spec.config,
    num_frames=config.data.num_frames,
    image_size=config.data.image_size,
    batch_size=min(s.batch_size, s.num_videos),
    config=sampler_config(config),
    mesh=mesh,
    rules=rules,
  )
  cond = sample_conditions(config, condition_of(spec.config), s.num_videos)
  batches = sampler.batches(
    state,
    schedule,
    num_videos=s.num_videos,
    base_seed=s.base_seed,
    residual_seed=s.residual_seed,
    cond=cond,
    progress=Progress("sampling", unit="videos").update,
  )
  out_dir = storage.path(workdir) / "samples"
  paths = write_samples(batches, out_dir, fps=s.fps, image_size=config.data.image_size)
  if cond is not None:
    write_prompts(out_dir, read_prompts(s), s.num_videos)
  return paths


def write_prompts(out_dir: Path, prompts: list[str], num_videos: int) -> None:
  """OUT_DIR/prompts.txt: which prompt made which video (video k: prompt k % count);
  nothing without prompts, and only on process 0."""
  if prompts and jax.process_index() == 0:
    (out_dir / "prompts.txt").write_text(
      "".join(f"video_{k:03d}.mp4\t{prompts[k % len(prompts)]}\n" for k in range(num_videos)),
      encoding="utf-8",
    )
