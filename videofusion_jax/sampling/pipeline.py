"""Videos from a trained workdir in three lines of Python (a notebook, a script):

  pipe = videofusion_jax.Pipeline.from_workdir("runs/demo")
  videos = pipe(4, base_seed=0, residual_seed=1)    # uint8 (4, N, H, W, 3)
  pipe.show(videos)                                  # or pipe.save(videos, "out/")

The sample CLI's modes "videos", "seed_grid" and "cascade" write a Pipeline's arrays.
A thin layer over: the config saved with the checkpoint
(`run_config.py`), its EMA parameters (`generate.load_ema_params`), `VideoSampler` for
clips of the model's window, `controls.long_video_plan` for longer
ones, `controls.grid_keys` for seed grids (`seed_grid`), `cascade.SuperResStage` for
an SR stage after the base model (`from_workdir(W, superres_workdir=DIR)`), and
`sample_conditions` for class ids and text prompts (CLIP and the prior
named by the config's `sample.clip_dir` / `sample.prior_workdir`). Seeds mean what the
CLI's `--base_seed` / `--residual_seed` mean: the same seeds give the same arrays as
`python -m videofusion_jax.sample` (before its lossy mp4 encoding). Each jitted sampler
is built once per (batch size, sampler settings) and kept for later calls.

`Pipeline.from_converted(DIR)` is the other kind: a converted image U-Net
(`python -m videofusion_jax.convert`) sampled alone, as the base generator of a
video model started from it would sample its centre frame (`converted_images.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import ml_collections
import numpy as np

from videofusion_jax import diffusion, parallel
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.from_config import condition_of, model_spec
from videofusion_jax.sampling import cascade, outputs, run_config, superres_folders
from videofusion_jax.sampling.conditions import sample_conditions
from videofusion_jax.sampling.controls import grid_keys, long_video_plan
from videofusion_jax.sampling.converted_images import ConvertedPipeline
from videofusion_jax.sampling.generate import VideoSampler, load_ema_params, sampler_config


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved with WORKDIR's latest checkpoint; FileNotFoundError without one."""
  with Checkpoints(workdir, read_only=True) as ckpt:
    step = ckpt.latest_step_or_raise(
      f"train there first (python -m videofusion_jax.train --workdir={workdir})"
    )
    return ml_collections.ConfigDict(ckpt.saved_config(step))


class Pipeline:
  """A video model with its weights and sampler settings; call it for videos."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    superres_workdir: str | None = None,
    superres_config: ml_collections.ConfigDict | None = None,
    superres_guidance_scale: float | None = None,
  ):
    """`config`: the config to sample with (see `from_workdir`); the EMA parameters of
    WORKDIR's latest checkpoint are loaded onto all devices, as the sample CLI does.
    `superres_workdir` and the rest: an SR stage after the base model (`from_workdir`)."""
    if config.model.kind == "superres":
      raise ConfigError(
        f"{workdir} holds a super-resolution model (model.kind='superres'), not a base "
        "video model; pass it as the SR stage of one: "
        f"Pipeline.from_workdir(BASE_WORKDIR, superres_workdir={str(workdir)!r})"
      )
    sr_config = None
    if superres_workdir:  # checked against the base model before any weights load
      sr_config = cascade.superres_settings(
        superres_workdir, superres_config, config, guidance_scale=superres_guidance_scale
      )
    self.config = config
    self.spec = model_spec(config)
    self.schedule = diffusion.make_schedule(
      config.diffusion.schedule, config.diffusion.num_timesteps
    )
    self.mesh = parallel.make_mesh(config.mesh)
    self.rules = parallel.rules_from_config(config.mesh.rules)
    self.graphdef, self.state = load_ema_params(self.spec, config, workdir, self.mesh, self.rules)
    self._samplers = {}  # (batch size, SamplerConfig) -> VideoSampler
    self._window_fns = {}  # (window shape, overlap, SamplerConfig) -> jitted window step
    self.superres = None  # the cascade's second stage, if any
    if sr_config is not None:
      kind, _ = superres_folders.folder_kind(superres_workdir)
      self.superres = cascade.SuperResStage(
        sr_config,
        superres_workdir,
        # A converted folder without its own settings takes the base config's, as the
        # sample CLI does: its seeds then follow each call's.
        follows_base=superres_config is None and kind == superres_folders.CONVERTED,
        mesh=self.mesh,
        rules=parallel.rules_from_config(sr_config.mesh.rules),
      )

  @classmethod
  def from_workdir(
    cls,
    workdir: str,
    config: ml_collections.ConfigDict | None = None,
    *,
    superres_workdir: str | None = None,
    superres_config: ml_collections.ConfigDict | None = None,
    superres_guidance_scale: float | None = None,
  ) -> Pipeline:
    """The model of WORKDIR's latest checkpoint, with the config saved beside it.

    With `config` (an experiment config, e.g. the file it was trained with and sampler
    settings changed), the sample CLI's rule applies instead: the checkpoint's model and
    clip shape, `config`'s sampler settings, a contradicting model section refused
    (`run_config.checkpoint_config`); then `config.sample.allow_untrained` lets a
    workdir without a checkpoint sample fresh weights.

    `superres_workdir` (the CLI's `--superres_workdir`): an SR training workdir or a
    converted Karlo SR folder; every call then returns the base videos super-resolved
    by it, the cascade of the CLI's "cascade" mode. Its settings are
    `superres_config` (`--superres_config`; default: the config saved with its
    checkpoint, or for a converted folder the base config's sampler settings) and
    `superres_guidance_scale` (`--superres_guidance_scale`).
    """
    if config is None:
      config = saved_config(workdir)
    else:
      config = run_config.checkpoint_config(config, workdir).config
    return cls(
      config,
      workdir,
      superres_workdir=superres_workdir,
      superres_config=superres_config,
      superres_guidance_scale=superres_guidance_scale,
    )

  @staticmethod
  def from_converted(path: str, **settings) -> ConvertedPipeline:
    """A converted image U-Net (`python -m videofusion_jax.convert`) sampled alone, as
    the base generator of a video model started from it (`train.init_base_from`)
    would sample its centre frame: calls return images as one-frame videos, uint8
    (B, 1, H, W, 3). A check that a conversion samples what its source sampled, before
    a training run. `settings`: `converted_images.ConvertedPipeline.load`'s
    (`schedule=`, `num_timesteps=`, `objective=`, `sampler=`, `num_steps=`, `eta=`...)."""
    return ConvertedPipeline.load(path, **settings)

  @property
  def window(self) -> int:
    """Frames per clip the model makes in one go (`data.num_frames`)."""
    return int(self.config.data.num_frames)

  @property
  def image_size(self) -> int:
    """Height and width of the videos a call returns: the SR stage's, if there is one."""
    return self.superres.image_size if self.superres else int(self.config.data.image_size)

  def __call__(
    self,
    num_videos: int,
    base_seed: int = 0,
    residual_seed: int = 0,
    *,
    num_frames: int | None = None,
    **condition,
  ) -> np.ndarray:
    """uint8 videos (num_videos, num_frames, H, W, 3).

    `num_frames` (default: the model's window) longer than the window makes long videos
    window by window (`sample.overlap`, `sample.fixed_base`; paper Sec 4.6). The
    keywords of `batches` set the condition: `class_id` (class-conditioned models;
    default: the classes in turn), `prompt` (text-to-video through the config's CLIP and
    prior), `guidance_scale` (default: the config's `sample.guidance_scale`), and
    `progress(done, total)`, called after each batch of clips (the sample CLI's bar).
    With an SR stage the videos are the super-resolved ones.
    """
    if num_frames is not None and num_frames != self.window:
      if self.superres is not None:
        raise ValueError(
          f"num_frames={num_frames}: long videos through the SR stage are not "
          f"supported; ask for num_frames={self.window} (the model's window), or for "
          "long videos from a Pipeline without superres_workdir"
        )
      condition.pop("progress", None)  # long videos report their windows themselves
      config = self._call_config(num_videos, base_seed, residual_seed, **condition)
      return self._long_videos(config, int(num_frames))
    return np.concatenate(list(self.batches(num_videos, base_seed, residual_seed, **condition)))

  def batches(
    self,
    num_videos: int,
    base_seed: int = 0,
    residual_seed: int = 0,
    *,
    prompt: str | None = None,
    class_id: int | None = None,
    guidance_scale: float | None = None,
    progress: Callable[[int, int], None] | None = None,
  ) -> Iterator[np.ndarray]:
    """The videos of `__call__` (clips of the model's window) as they come, a uint8
    batch of up to `sample.batch_size` at a time: what the sample CLI writes to disk
    batch by batch, so the files of a long run appear as it goes. (With an SR stage
    every base video is made first, then the SR batches come.)"""
    config = self._call_config(
      num_videos,
      base_seed,
      residual_seed,
      prompt=prompt,
      class_id=class_id,
      guidance_scale=guidance_scale,
    )
    keys = video_keys(base_seed, 0, num_videos), video_keys(residual_seed, 0, num_videos)
    return self._uint8_batches(config, *keys, progress)  # settings checked now

  def seed_grid(
    self,
    size: int,
    vary: str = "residual",
    base_seed: int = 0,
    residual_seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
    **condition,
  ) -> np.ndarray:
    """The seed grid of the paper's Fig. 1 (the CLI's `--vary=VARY --num_videos=SIZE`),
    uint8 (K, N, H, W, 3) in `controls.grid_keys`' order: "residual", SIZE videos of base
    seed offset 0 and residual offsets 0..SIZE-1 (same content, new motion); "base",
    the reverse; "both", SIZE x SIZE videos, video i * SIZE + j of base offset i and
    residual offset j. The condition keywords are `batches`' (`prompt`, `class_id`,
    `guidance_scale`); with an SR stage, the super-resolved
    grid (SR video k: the SR seeds' video k)."""
    base_keys, residual_keys, _ = grid_keys(base_seed, residual_seed, size, vary)
    config = self._call_config(len(base_keys), base_seed, residual_seed, **condition)
    return np.concatenate(list(self._uint8_batches(config, base_keys, residual_keys, progress)))

  def cascade(
    self,
    num_videos: int,
    base_seed: int = 0,
    residual_seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
    superres_progress: Callable[[int, int], None] | None = None,
    **condition,
  ) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Both stages: the base videos, uint8 (K, N, h, w, 3), and their super-resolved
    versions as they come, uint8 batches (b, N, H, W, 3): what the sample CLI's cascade
    mode writes to samples/ and samples_<H>/. A call returns the second alone. The
    condition keywords are `batches`' (`prompt`, `class_id`, `guidance_scale`)."""
    if self.superres is None:
      raise ValueError(
        "this Pipeline has no SR stage; make one with "
        "Pipeline.from_workdir(W, superres_workdir=SR_WORKDIR_OR_CONVERTED_FOLDER)"
      )
    config = self._call_config(num_videos, base_seed, residual_seed, **condition)
    keys = video_keys(base_seed, 0, num_videos), video_keys(residual_seed, 0, num_videos)
    low, high = self._cascade(config, *keys, progress, superres_progress)
    return video_io.to_uint8(low), (video_io.to_uint8(b) for b in high)

  def _base_batches(self, config, base_keys, residual_keys, progress):
    """(cond, float batches in [-1, 1]) of the base model, video k from keys k."""
    cond = sample_conditions(config, condition_of(self.spec.config), len(base_keys))
    batches = self._sampler(config).keyed_batches(
      self.state, self.schedule, base_keys, residual_keys, cond=cond, progress=progress
    )
    return cond, batches

  def _cascade(self, config, base_keys, residual_keys, progress, superres_progress):
    """(low-res float videos, SR float batches): the base videos are all made before
    the SR stage starts, and pass to it as floats, never through a file."""
    cond, batches = self._base_batches(config, base_keys, residual_keys, progress)
    sr_config = self.superres.config_for(config)
    sr_condition = cascade.superres_conditions(
      config, condition_of(self.superres.spec.config), cond, len(base_keys)
    )
    low = np.concatenate(list(batches))
    high = self.superres.batches(
      low, sr_config=sr_config, condition=sr_condition, progress=superres_progress
    )
    return low, high

  def _uint8_batches(self, config, base_keys, residual_keys, progress) -> Iterator[np.ndarray]:
    if self.superres is None:
      _, batches = self._base_batches(config, base_keys, residual_keys, progress)
      return (video_io.to_uint8(b) for b in batches)
    return self._superres_uint8(config, base_keys, residual_keys, progress)

  def _superres_uint8(self, config, base_keys, residual_keys, progress):
    _, high = self._cascade(config, base_keys, residual_keys, progress, None)
    for batch in high:
      yield video_io.to_uint8(batch)

  def save(self, videos: np.ndarray, out_dir: str) -> list[Path]:
    """Write each video (K, N, H, W, 3) as OUT_DIR/video_XXX.mp4 (a one-frame video as
    OUT_DIR/image_XXX.png); return the paths."""
    return outputs.save_videos(videos, out_dir, fps=int(self.config.sample.fps))

  def show(self, videos: np.ndarray, **kwargs) -> None:
    """Play the videos in the running notebook (`display.show_videos`; e.g. `titles=`)."""
    outputs.show_videos(videos, fps=int(self.config.sample.fps), **kwargs)

  def _call_config(
    self, num_videos, base_seed, residual_seed, *, prompt=None, class_id=None, guidance_scale=None
  ) -> ml_collections.ConfigDict:
    """This call's settings on a copy of the config, as the CLI's flags set them."""
    if num_videos < 1:
      raise ValueError(f"num_videos={num_videos}; expected >= 1")
    kind = condition_of(self.spec.config).kind
    # The CLI ignores a condition the model does not take; a caller is told instead.
    if class_id is not None and kind != "class":
      raise ValueError(
        f"class_id={class_id}: this model is not class-conditioned (cond.kind={kind!r})"
      )
    if prompt is not None and kind not in ("image_embed", "unclip"):
      raise ValueError(
        f"prompt={prompt!r}: this model takes no text (cond.kind={kind!r}; "
        "prompts need 'image_embed' or 'unclip')"
      )
    config = self.config.copy_and_resolve_references()
    s = config.sample
    s.num_videos, s.base_seed, s.residual_seed = num_videos, base_seed, residual_seed
    if class_id is not None:
      s.class_id = class_id
    if guidance_scale is not None:
      s.guidance_scale = float(guidance_scale)
    if prompt is not None:
      s.prompt, s.prompts_file = prompt, ""
    return config

  def _sampler(self, config: ml_collections.ConfigDict) -> VideoSampler:
    """The sample CLI's sampler for this call (same batch size: the same arrays)."""
    s = config.sample
    settings = sampler_config(config)
    key = (min(s.batch_size, s.num_videos), settings)
    if key not in self._samplers:
      self._samplers[key] = VideoSampler(
        self.graphdef,
        self.spec.config,
        num_frames=self.window,
        image_size=config.data.image_size,
        batch_size=key[0],
        config=settings,
        mesh=self.mesh,
        rules=self.rules,
      )
    return self._samplers[key]

  def _long_videos(self, config: ml_collections.ConfigDict, num_frames: int) -> np.ndarray:
    """`controls.long_videos`' windows (`controls.long_video_plan`), kept in memory
    instead of streamed to mp4."""
    config.sample.num_frames = num_frames
    plan = long_video_plan(config, self.spec.config)
    if condition_of(self.spec.config).enabled:
      raise ValueError(
        f"num_frames={num_frames}: long videos of conditioned models "
        f"(cond.kind={self.config.cond.kind!r}) are not supported yet; ask "
        f"for num_frames={self.window} (the model's window)"
      )
    key = (plan.shape, plan.overlap, plan.settings)
    if key not in self._window_fns:
      self._window_fns[key] = plan.window_fn(self.graphdef)
    batches = {}  # first video -> its windows' frames
    for first, _, frames in plan.windows(self._window_fns[key], self.state, self.schedule):
      batches.setdefault(first, []).append(frames)
    return np.concatenate([np.concatenate(w, axis=1) for w in batches.values()])
