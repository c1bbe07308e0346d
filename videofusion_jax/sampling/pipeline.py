"""Videos from a trained workdir in three lines of Python (a notebook, a script):

  pipe = videofusion_jax.Pipeline.from_workdir("runs/demo")
  videos = pipe(4, base_seed=0, residual_seed=1)    # uint8 (4, N, H, W, 3)
  pipe.show(videos)                                  # or pipe.save(videos, "out/")

The sample CLI's default mode ("videos") is a Pipeline call written to files. A thin
layer over: the config saved with the checkpoint
(`run_config.py`), its EMA parameters (`generate.load_ema_params`), `VideoSampler` for
clips of the model's window, `controls.long_video_plan` for longer
ones, and `sample_conditions` for class ids and text prompts (CLIP and the prior
named by the config's `sample.clip_dir` / `sample.prior_workdir`). Seeds mean what the
CLI's `--base_seed` / `--residual_seed` mean: the same seeds give the same arrays as
`python -m videofusion_jax.sample` (before its lossy mp4 encoding). Each jitted sampler
is built once per (batch size, sampler settings) and kept for later calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import ml_collections
import numpy as np

from videofusion_jax import diffusion, parallel, storage
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.data import video_io
from videofusion_jax.models.from_config import condition_of, model_spec
from videofusion_jax.sampling import display, run_config
from videofusion_jax.sampling.conditions import sample_conditions
from videofusion_jax.sampling.controls import long_video_plan
from videofusion_jax.sampling.generate import VideoSampler, load_ema_params, sampler_config


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved with WORKDIR's latest checkpoint; FileNotFoundError without one."""
  with Checkpoints(workdir, read_only=True) as ckpt:
    step = ckpt.latest_step()
    if step is None:
      raise FileNotFoundError(
        f"no checkpoint in {ckpt.directory}: train there first "
        f"(python -m videofusion_jax.train --workdir={workdir})"
      )
    return ml_collections.ConfigDict(ckpt.saved_config(step))


class Pipeline:
  """A video model with its weights and sampler settings; call it for videos."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    """`config`: the config to sample with (see `from_workdir`); the EMA parameters of
    WORKDIR's latest checkpoint are loaded onto all devices, as the sample CLI does."""
    if config.model.kind == "superres":
      raise ConfigError(
        f"{workdir} holds a super-resolution model (model.kind='superres'): "
        "the Pipeline samples base video models only; run the cascade with "
        "python -m videofusion_jax.sample --superres_workdir=..."
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

  @classmethod
  def from_workdir(cls, workdir: str, config: ml_collections.ConfigDict | None = None) -> Pipeline:
    """The model of WORKDIR's latest checkpoint, with the config saved beside it.

    With `config` (an experiment config, e.g. the file it was trained with and sampler
    settings changed), the sample CLI's rule applies instead: the checkpoint's model and
    clip shape, `config`'s sampler settings, a contradicting model section refused
    (`run_config.checkpoint_config`); then `config.sample.allow_untrained` lets a
    workdir without a checkpoint sample fresh weights.
    """
    if config is None:
      config = saved_config(workdir)
    else:
      config = run_config.checkpoint_config(config, workdir).config
    return cls(config, workdir)

  @property
  def window(self) -> int:
    """Frames per clip the model makes in one go (`data.num_frames`)."""
    return int(self.config.data.num_frames)

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
    """
    if num_frames is not None and num_frames != self.window:
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
    batch by batch, so the files of a long run appear as it goes."""
    config = self._call_config(
      num_videos,
      base_seed,
      residual_seed,
      prompt=prompt,
      class_id=class_id,
      guidance_scale=guidance_scale,
    )
    return self._clip_batches(config, progress)  # the settings checked now, not at first use

  def _clip_batches(self, config: ml_collections.ConfigDict, progress) -> Iterator[np.ndarray]:
    s = config.sample
    cond = sample_conditions(config, condition_of(self.spec.config), s.num_videos)
    batches = self._sampler(config).batches(
      self.state,
      self.schedule,
      num_videos=s.num_videos,
      base_seed=s.base_seed,
      residual_seed=s.residual_seed,
      cond=cond,
      progress=progress,
    )
    return (video_io.to_uint8(b) for b in batches)

  def save(self, videos: np.ndarray, out_dir: str) -> list[Path]:
    """Write each video (K, N, H, W, 3) as OUT_DIR/video_XXX.mp4; return the paths."""
    videos = _check_videos(videos)
    out = storage.path(out_dir)
    return [
      video_io.write_mp4(out / f"video_{k:03d}.mp4", v, fps=int(self.config.sample.fps))
      for k, v in enumerate(videos)
    ]

  def show(self, videos: np.ndarray, **kwargs) -> None:
    """Play the videos in the running notebook (`display.show_videos`; e.g. `titles=`)."""
    kwargs.setdefault("fps", int(self.config.sample.fps))
    display.show_videos(_check_videos(videos), **kwargs)

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


def _check_videos(videos) -> np.ndarray:
  videos = np.asarray(videos)
  if videos.ndim != 5 or videos.dtype != np.uint8:
    raise ValueError(
      f"videos have shape {videos.shape} dtype {videos.dtype}; expected "
      "uint8 (K, N, H, W, 3), as a Pipeline call returns"
    )
  return videos
