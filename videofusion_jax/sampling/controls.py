"""The controls the decomposition gives, from Python and behind `sample.py` flags.

- seed grids (`--vary=residual|base|both`): videos that keep the base seed and vary
  the residual seed (same content, new motion), the reverse, or a K x K grid (row i:
  base seed i, column j: residual seed j) — the paper's Fig. 1. `grid_keys` gives each
  video's keys, `Pipeline.seed_grid` samples them, `write_seed_grid` writes them as
  mp4s and one PNG with a row of frames per video.
- `long_videos(config, workdir)` (`--num_frames=512`): videos longer than the model's
  window, made window by window with the replacement method and the base noise fixed
  for the whole video (`--fixed_base=false`: fresh base noise per window, the
  baseline), streamed to mp4 as windows complete.

Videos are keyed per video (`noise_sharing.video_keys`): video k of seed s is the same
whatever the batch size, the grid layout or the length requested.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from videofusion_jax import diffusion, storage
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.long_video import check_long_video, long_video_windows, window_step
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.from_config import ModelSpec, videofusion_config
from videofusion_jax.models.videofusion import VideoFusion
from videofusion_jax.progress import Progress
from videofusion_jax.sampling.generate import (
  SamplerConfig,
  centre_first,
  load_ema_params,
  model_eps_fn,
  sampler_config,
)
from videofusion_jax.sampling.modes import VARY


def grid_keys(base_seed: int, residual_seed: int, size: int, vary: str):
  """(base_keys, residual_keys, names) of a seed grid of `size` (K) per axis.

  "residual": K videos with the base key of (base_seed, 0) and residual keys
  (residual_seed, j); "base": the reverse; "both": K * K videos, video (i, j) with base
  key (base_seed, i) and residual key (residual_seed, j), in row-major order.
  """
  if vary not in VARY:
    raise ValueError(f"sample.vary={vary!r}; expected one of {VARY}")
  if size < 1:
    raise ValueError(f"sample.num_videos={size}; a seed grid needs >= 1 per axis")
  bases, residuals = video_keys(base_seed, 0, size), video_keys(residual_seed, 0, size)
  idx = np.arange(size)
  if vary == "residual":
    bi, ri = np.zeros_like(idx), idx
  elif vary == "base":
    bi, ri = idx, np.zeros_like(idx)
  else:
    bi, ri = np.repeat(idx, size), np.tile(idx, size)
  names = [f"grid_{vary}_b{b}_r{r}" for b, r in zip(bi, ri)]
  return bases[bi], residuals[ri], names


def write_seed_grid(videos: np.ndarray, out_dir, *, vary: str, fps: int) -> list[Path]:
  """Write a seed grid's uint8 videos (in `grid_keys`' order, as `Pipeline.seed_grid`
  returns them) to OUT_DIR: `grid_<vary>_b<i>_r<j>.mp4` per video (i, j: which base /
  residual seed offset) and `grid_<vary>.png` (a row of frames per video, in the same
  order); return the paths, the PNG last. Only process 0 writes (the others: [])."""
  if jax.process_index() != 0:
    return []
  size = len(videos) if vary != "both" else round(len(videos) ** 0.5)
  _, _, names = grid_keys(0, 0, size, vary)
  if len(names) != len(videos):
    raise ValueError(f"{len(videos)} videos for a {vary!r} seed grid; expected K or K * K")
  out_dir = storage.path(out_dir)
  paths = [
    video_io.write_mp4(out_dir / f"{name}.mp4", v, fps=fps) for name, v in zip(names, videos)
  ]
  scale = max(1, 64 // videos.shape[2])
  paths.append(
    video_io.write_png(out_dir / f"grid_{vary}.png", video_io.frame_strip(videos, scale=scale))
  )
  return paths


def make_window_fn(
  graphdef: nnx.GraphDef,
  window_shape,
  overlap: int,
  lam: float,
  config: SamplerConfig,
):
  """-> jitted `fn(state, schedule, base_key, residual_key, known, use_known)
  -> window video`: `diffusion.long_video.window_step` with the model."""
  _check_ddim(config)

  @jax.jit
  def window_fn(state, schedule, base_key, residual_key, known, use_known):
    model = nnx.merge(graphdef, state)

    def run(**model_inputs):
      eps_fn = model_eps_fn(model, schedule, with_variance=False, **model_inputs)
      return window_step(
        eps_fn,
        schedule,
        window_shape,
        base_key,
        residual_key,
        known,
        use_known,
        lam=lam,
        num_steps=config.num_steps,
        eta=config.eta,
        clip_x0=config.clip_x0,
        noise_mode=config.noise_mode,
      )

    return centre_first(model, run, window_shape[1])

  return window_fn


def _check_ddim(config: SamplerConfig) -> None:
  if config.sampler != "ddim":
    raise ValueError(
      f"sample.sampler={config.sampler!r}; long videos use DDIM (sample.sampler='ddim')"
    )


def long_video_overlap(config: ml_collections.ConfigDict) -> int:
  """`sample.overlap`, or half the window when it is 0."""
  return int(config.sample.overlap) or config.data.num_frames // 2


@dataclasses.dataclass(frozen=True)
class LongVideoPlan:
  """What a long-video run makes, checked before any weights load: `num_videos` videos of
  `num_frames` frames, windows of `shape` (batch, window, H, W, C) overlapping by
  `overlap` frames, `num_windows` per video; `long_video_plan` builds it from a config."""

  num_videos: int
  num_frames: int
  shape: tuple[int, ...]
  overlap: int
  num_windows: int
  settings: SamplerConfig
  lam: float
  base_seed: int
  residual_seed: int
  fixed_base: bool

  def window_fn(self, graphdef: nnx.GraphDef):
    """The jitted window step of this plan (`make_window_fn`, plain replacement)."""
    return make_window_fn(graphdef, self.shape, self.overlap, self.lam, self.settings)

  def windows(self, window_fn, state: nnx.State, schedule: diffusion.Schedule):
    """Yield `(first, window, frames)`: for the batch of videos starting at video
    `first`, window `window`'s new frames, uint8 (b, n, H, W, 3) with b the batch's real
    videos (a last batch is padded with copies of the last video's keys, computed and
    dropped). Video k's keys are `video_keys(seed, 0, num_videos)[k]`, as for clips."""
    step = functools.partial(window_fn, state, schedule)
    base_keys = video_keys(self.base_seed, 0, self.num_videos)
    residual_keys = video_keys(self.residual_seed, 0, self.num_videos)
    batch = self.shape[0]
    for first in range(0, self.num_videos, batch):
      take = min(batch, self.num_videos - first)
      idx = jnp.minimum(jnp.arange(first, first + batch), self.num_videos - 1)  # pad: repeat
      for w, frames in long_video_windows(
        step,
        self.num_frames,
        self.shape,
        self.overlap,
        base_keys[idx],
        residual_keys[idx],
        fixed_base=self.fixed_base,
      ):
        yield first, w, video_io.to_uint8(jax.device_get(frames))[:take]


def long_video_plan(config: ml_collections.ConfigDict, model_config) -> LongVideoPlan:
  """The long videos `config.sample` asks of a VideoFusion of `model_config`: the
  window is the model's `data.num_frames`, the overlap `long_video_overlap`, and
  `sample.num_frames` must be window + k * (window - overlap). Raises ValueError naming
  the field for a length, video count, sampler or window shape that cannot run."""
  s = config.sample
  window, size = config.data.num_frames, config.data.image_size
  overlap = long_video_overlap(config)
  num_windows = check_long_video(int(s.num_frames), window, overlap)
  if s.num_videos < 1:
    raise ValueError(f"sample.num_videos={s.num_videos}; expected >= 1")
  settings = sampler_config(config)
  settings.validate(model_config.learned_variance)
  shape = (min(s.batch_size, s.num_videos), window, size, size, model_config.channels)
  model_config.check_video(shape, name="long-video window")
  _check_ddim(settings)
  return LongVideoPlan(
    num_videos=int(s.num_videos),
    num_frames=int(s.num_frames),
    shape=shape,
    overlap=overlap,
    num_windows=num_windows,
    settings=settings,
    lam=model_config.lam,
    base_seed=int(s.base_seed),
    residual_seed=int(s.residual_seed),
    fixed_base=bool(s.fixed_base),
  )


def long_videos(config: ml_collections.ConfigDict, workdir: str) -> list[Path]:
  """Write `sample.num_videos` videos of `sample.num_frames` frames to
  WORKDIR/samples/long_XXX.mp4, streaming each window's new frames; return the paths.

  The window is the model's `data.num_frames`; windows overlap by `long_video_overlap`
  frames, so `sample.num_frames` must be window + k * (window - overlap) (see
  `long_video_plan`, which `Pipeline` uses too). The known
  frames are noised with each window's own decomposed noise, so when the centre frame is
  a known one (overlap > (window - 1) // 2, the default half window included) it holds
  the window's base noise, the base generator denoises it back to the known frame, and
  the new frames are made around it.
  The known centre, not the base noise, then holds the content: `sample.fixed_base`
  shows its effect when the centre is new in every window, overlap <= (window - 1) // 2
  (tests/test_long_video_drift.py). Overlaps past the centre are re-centred
  (`long_video_windows(recentre=True)`): the last frames put out sit at 0..centre, so
  the centre a new frame is made from is its nearest known frame. Measured on trained
  models every overlap up to window - 1 (one new frame per window) stays clean window
  after window (docs/sampling.md, "Long videos"; `diffusion/long_video.py` has the
  diagnosis of the drift before, and the remedies tried and removed).
  """
  vf = videofusion_config(config)
  plan = long_video_plan(config, vf)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  graphdef, state = load_ema_params(ModelSpec(vf, VideoFusion), config, workdir)
  out_dir = storage.path(workdir) / "samples"
  fps = config.sample.fps
  batch = plan.shape[0]
  num_batches = -(-plan.num_videos // batch)
  progress = Progress("long videos", num_batches * plan.num_windows, unit="windows")
  paths, streams = [], []
  try:
    for first, w, frames in plan.windows(plan.window_fn(graphdef), state, schedule):
      if w == 0:  # a new batch of videos: the last batch's files are complete
        done, streams = streams, []
        paths += [stream.close() for stream in done]
        streams = [
          video_io.Mp4Stream(out_dir / f"long_{first + k:03d}.mp4", fps=fps)
          for k in range(len(frames))
        ]
      for stream, video in zip(streams, frames):
        stream.write(video)
      progress.update(
        first // batch * plan.num_windows + w + 1,
        note=f"{streams[0].num_frames}/{plan.num_frames} frames of videos up to "
        f"{first + len(frames)}/{plan.num_videos}",
      )
  except BaseException as e:
    progress.close()
    for stream in streams:
      stream.close(e)
    raise
  return paths + [stream.close() for stream in streams]


def _progress(what: str, unit: str):
  return Progress(what, unit=unit).update
