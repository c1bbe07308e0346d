"""How much the residual generator leans on the centre frame, per noise level.

  python -m videofusion_jax.tools.context_reliance --workdir=runs/demo [--steps=500,1000]

For each saved checkpoint (EMA weights) and timestep t: the residual loss (Eq. 14 on the
non-centre frames) of held-out clips noised at t, once as the model sees them and once
with every clip's centre estimate swapped for the next clip's (`model.residual_context`
then describes the wrong video). The ratio swapped / true is 1 where the residual
generator ignores the centre and grows with its reliance on it.

Why it exists: the demo's residual frames drift away from the centre frame as training
goes on (docs/history.md "Demo quality": frame-to-centre distance 11 -> 21/255
from 500 to 1,000 steps of batch 32), and this ratio at the high noise levels where a
frame's content is decided (t = 600-800 of 1000) falls with it. A change meant to tie
the frames to the centre should raise it there; the samples' "to centre" says whether
that is enough.

Prints one row per step and a `CONTEXT_RELIANCE_JSON {...}` line.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from flax import nnx

from videofusion_jax import diffusion, storage
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data.sources import make_source
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.models.videofusion import VideoFusion

TIMESTEPS = (50, 200, 400, 600, 800, 950)


def residual_loss(
  model: VideoFusion,
  videos: jax.Array,
  t: int,
  alphas_cumprod: jax.Array,
  key: jax.Array,
  *,
  swap_context: bool,
) -> jax.Array:
  """Eq. 14's residual term for `videos` (B, N, H, W, C) noised at timestep `t`; with
  `swap_context`, clip k's residual generator gets clip k+1's centre estimate (or, with
  `residual_context = "centre_frame"`, clip k+1's clean centre frame)."""
  cfg = model.config
  base_key, residual_key = jax.random.split(key)
  eps = diffusion.decomposed_noise(base_key, residual_key, videos.shape, cfg.lam)
  t = jnp.full((videos.shape[0],), t, jnp.int32)
  z_t = diffusion.q_sample(videos, t, eps, alphas_cumprod)
  swap = (lambda x: jnp.roll(x, 1, axis=0)) if swap_context else (lambda x: x)
  if cfg.needs_centre_frame:  # the context is the clean centre frame: swap that
    centre = swap(videos[:, diffusion.centre_index(videos.shape[1])])
    base_fn, residual_fn = model.generators(videos.shape, t, alphas_cumprod, centre_frame=centre)
  else:  # the context is the base's estimate, made inside the denoiser: swap it there
    base_fn, true_residual_fn = model.generators(videos.shape, t, alphas_cumprod)
    residual_fn = lambda z_others, estimate: true_residual_fn(z_others, swap(estimate))
  out = diffusion.decomposed_denoise(
    z_t,
    alphas_cumprod[t],
    cfg.lam,
    base_fn,
    residual_fn,
    objective=cfg.objective,
    stop_base_grad=True,
    learned_variance=cfg.learned_variance,
  )
  return diffusion.decomposed_loss(eps, out.eps.astype(eps.dtype))["loss_residual"]


def context_reliance(
  graphdef: nnx.GraphDef,
  params: nnx.State,
  videos: np.ndarray,
  alphas_cumprod: jax.Array,
  timesteps=TIMESTEPS,
  repeats: int = 3,
  seed: int = 0,
) -> dict[int, dict[str, float]]:
  """{t: {"true", "swapped", "ratio"}}: residual losses averaged over `repeats` noise
  draws (the same draws for both), and swapped / true."""
  check_model(nnx.merge(graphdef, params))
  if len(videos) < 2:
    raise ValueError(f"{len(videos)} clip(s): swapping centre contexts needs at least 2")
  videos = jnp.asarray(videos)

  @jax.jit
  def losses(params, t, key):
    model = nnx.merge(graphdef, params).in_compute_dtype()
    return tuple(
      residual_loss(model, videos, t, alphas_cumprod, key, swap_context=swap)
      for swap in (False, True)
    )

  result = {}
  for t in timesteps:
    draws = [losses(params, t, jax.random.key(seed * 1000 + r)) for r in range(repeats)]
    true, swapped = (float(np.mean([d[i] for d in draws])) for i in (0, 1))
    result[int(t)] = {"true": true, "swapped": swapped, "ratio": swapped / true}
  return result


def check_model(model) -> None:
  """Only an unconditioned VideoFusion with a centre context can be asked this."""
  if not isinstance(model, VideoFusion):
    raise ValueError(
      f"{type(model).__name__}: context reliance is measured on VideoFusion "
      "models (model.kind='videofusion')"
    )
  cfg = model.config
  if cfg.residual_context == "none":
    raise ValueError(
      "model.residual_context='none': the residual generator sees no centre context to swap"
    )
  if cfg.cond.enabled:
    raise ValueError(
      f"cond.kind={cfg.cond.kind!r}: conditioned models are not supported "
      "(the clips' conditions are not read)"
    )


def measure_workdir(
  workdir: str | Path,
  steps: list[int] | None = None,
  *,
  num_clips: int = 64,
  timesteps=TIMESTEPS,
  repeats: int = 3,
) -> dict:
  """{step: {t: {...}}} for the EMA weights of each of `steps` (default: every saved
  one), on `num_clips` clips the model was not trained on (the data config's source
  with seed + 1: the synthetic set's other clips; a folder's first clips)."""
  folder = storage.path(workdir) / "checkpoints"
  if not folder.is_dir():  # named here: orbax would only warn
    raise FileNotFoundError(f"--workdir={workdir}: no checkpoints/ folder; train there first")
  with Checkpoints(workdir, read_only=True) as ckpt:
    available = sorted(ckpt.manager.all_steps())
    if not available:
      raise FileNotFoundError(f"{folder} holds no finished checkpoint")
    steps = steps or available
    missing = sorted(set(steps) - set(available))
    if missing:
      raise ValueError(f"--steps: {missing} not saved in {workdir}; saved: {available}")
    config = ml_collections.ConfigDict(ckpt.saved_config(steps[-1]))
    spec = model_spec(config)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: spec.build(config.seed)))
    source = make_source(config.data, seed=config.seed + 1)
    if len(source) < num_clips:
      raise ValueError(f"--num_clips={num_clips}: the data source holds {len(source)}")
    videos = np.stack([source[i]["video"] for i in range(num_clips)])
    schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), abstract)
    return {
      step: context_reliance(
        graphdef,
        ckpt.restore(step, ema=target)["ema"],
        videos,
        schedule.alphas_cumprod,
        timesteps,
        repeats,
      )
      for step in steps
    }


def format_table(result: dict) -> str:
  timesteps = list(next(iter(result.values())))
  lines = [
    "swapped / true residual loss (1 = the centre context is ignored)",
    f"{'step':>8} " + " ".join(f"{f't={t}':>7}" for t in timesteps),
  ]
  for step, row in result.items():
    lines.append(f"{step:>8} " + " ".join(f"{row[t]['ratio']:7.2f}" for t in timesteps))
  return "\n".join(lines)


def main(argv):
  del argv
  steps = [int(s) for s in _STEPS.value] if _STEPS.value else None
  result = measure_workdir(
    _WORKDIR.value,
    steps,
    num_clips=_NUM_CLIPS.value,
    timesteps=[int(t) for t in _TIMESTEPS.value],
    repeats=_REPEATS.value,
  )
  print(format_table(result))
  print("CONTEXT_RELIANCE_JSON " + json.dumps(result))


if __name__ == "__main__":
  _WORKDIR = flags.DEFINE_string(
    "workdir", None, "Training workdir with checkpoints.", required=True
  )
  _STEPS = flags.DEFINE_list("steps", [], "Checkpoint steps (default: every saved one).")
  _NUM_CLIPS = flags.DEFINE_integer("num_clips", 64, "Held-out clips per measurement.")
  _TIMESTEPS = flags.DEFINE_list(
    "timesteps", [str(t) for t in TIMESTEPS], "Noise levels t (of the schedule's T)."
  )
  _REPEATS = flags.DEFINE_integer("repeats", 3, "Noise draws averaged per t.")
  app.run(main)
