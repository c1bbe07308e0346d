"""Does the decomposition help? FVD at equal training compute for lam in {0, .25, .5, .75}.

  python -m benchmarks.decomposition_study                 # CPU default (~11 min, 2 quiet cores)
  python -m benchmarks.decomposition_study --large         # a GPU: longer, more videos
  python -m benchmarks.decomposition_study --data_path=/path/to/videos  # a local folder

The paper's Table 5 varies lam on UCF101 (FVD 149 / 122 / 139 / 181 at lam 0.1 / 0.25
/ 0.5 / 0.75). Here the tiny model of `configs/demo.py` is trained from scratch with the
real training loop (`training.loop.train`) for the same number of steps and batch size
at every setting, so every setting gets the same training compute (same network, same
FLOPs per step). lam = 0 is run as the standard process (`diffusion.noise_mode =
"standard"`, independent noise per frame): with lam = 0 the decomposed noise is exactly
that distribution, so the row is "no shared base noise" with the same networks. Each
run then samples `num_videos` videos with DDIM (EMA weights), and FVD
(`metrics.fvd`, I3D Kinetics-400 logits) is computed against `num_real` real clips of
the same data; one real feature set serves every run. Mean +/- standard deviation over
seeds (seed = parameter init, data order and noise), and every run's value, are
printed; the last line, `DECOMP_JSON {...}`, is machine-readable.

With a few dozen videos FVD is a noisy, rank-deficient estimate (the protocol uses
2048): read the CPU default as a check that the pipeline runs end to end, and the
`--large` setting as the measurement.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging

from benchmarks import provenance
from configs import demo
from videofusion_jax import diffusion
from videofusion_jax.data import video_io
from videofusion_jax.metrics import evaluation, fvd, motion
from videofusion_jax.metrics.features import FeatureExtractor, extract
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.sampling import generate
from videofusion_jax.training.loop import train


@dataclasses.dataclass(frozen=True)
class StudySettings:
  """One study: every (lam, seed) pair is trained, sampled and scored the same way."""

  lams: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)  # 0.0 runs as the standard process
  seeds: tuple[int, ...] = (0, 1)
  train_steps: int = 50  # equal for every run: equal training compute
  batch_size: int = 4
  num_frames: int = 16  # I3D (FVD) needs 16-frame clips
  image_size: int = 16
  num_videos: int = 16  # sampled per run
  num_real: int = 32  # real clips, shared by all runs
  sampler_steps: int = 10  # DDIM steps
  lr: float = 1e-3
  data_path: str = ""  # "" = the synthetic shapes; else a folder of videos

  def validate(self) -> None:
    if not self.lams or any(not 0.0 <= lam < 1.0 for lam in self.lams):
      raise ValueError(f"lams={self.lams}; expected values in [0, 1)")
    if not self.seeds:
      raise ValueError("seeds=(); expected at least one seed")
    for name in ("train_steps", "batch_size", "num_frames", "image_size", "sampler_steps"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")
    for name in ("num_videos", "num_real"):
      if getattr(self, name) < 2:
        raise ValueError(f"{name}={getattr(self, name)}; FVD needs >= 2 videos per side")


CPU_DEFAULT = StudySettings()
LARGE = StudySettings(
  seeds=(0, 1, 2),
  train_steps=20_000,
  batch_size=32,
  image_size=32,
  num_videos=512,
  num_real=1024,
  sampler_steps=50,
  lr=2e-4,
)


def run_config(settings: StudySettings, lam: float, seed: int):
  """The experiment config of one run: demo.py's tiny model at the study's sizes."""
  c = demo.get_config()
  c.seed = seed
  c.data.num_frames, c.data.image_size = settings.num_frames, settings.image_size
  if settings.data_path:
    c.data.source, c.data.path = "folder", settings.data_path
  c.diffusion.lam = lam
  c.diffusion.noise_mode = "standard" if lam == 0.0 else "decomposed"
  t = c.train
  t.num_steps, t.batch_size = settings.train_steps, settings.batch_size
  t.log_every = max(1, settings.train_steps // 5)
  t.checkpoint_every = settings.train_steps
  t.sample_every, t.tensorboard = 0, False
  c.optim.lr = settings.lr
  c.optim.warmup_steps = min(c.optim.warmup_steps, settings.train_steps // 5)
  c.sample.num_steps = settings.sampler_steps
  c.sample.batch_size = min(settings.num_videos, 16)
  return c


def _real_videos(settings: StudySettings) -> evaluation.Videos:
  data = run_config(settings, 0.5, 0).data
  protocol = evaluation.EvalSettings(
    num_videos=settings.num_real,
    seed=1234,
    num_frames=settings.num_frames,
    image_size=settings.image_size,
  )
  return evaluation.data_videos(data, protocol, {"kind": "study real clips"})


def _sample(config, workdir: str, num_videos: int) -> np.ndarray:
  spec = model_spec(config)
  schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
  graphdef, state = generate.load_ema_params(spec, config, workdir)
  sampler = generate.VideoSampler(
    graphdef,
    spec.config,
    num_frames=config.data.num_frames,
    image_size=config.data.image_size,
    batch_size=config.sample.batch_size,
    config=generate.sampler_config(config),
  )
  return np.concatenate(
    [
      video_io.to_uint8(b)
      for b in sampler.batches(
        state,
        schedule,
        num_videos=num_videos,
        base_seed=config.seed + 100,
        residual_seed=config.seed + 200,
      )
    ]
  )


def summarise(runs: list[dict]) -> dict:
  """{lam: {"mean", "std", "min", "max", "fvd": [per seed]}} from the run records."""
  out = {}
  for lam in sorted({r["lam"] for r in runs}):
    vals = np.array([r["fvd"] for r in runs if r["lam"] == lam], np.float64)
    out[str(lam)] = {
      "mean": float(vals.mean()),
      "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
      "min": float(vals.min()),
      "max": float(vals.max()),
      "fvd": vals.tolist(),
    }
  return out


def run_study(
  settings: StudySettings, workdir: str, extractor: FeatureExtractor | None = None
) -> dict:
  """Train, sample and score every (lam, seed); return the runs and their summary."""
  settings.validate()
  extractor = extractor or fvd.i3d_extractor(batch_size=8)
  start = time.time()
  reals = _real_videos(settings)
  real = extract({"i3d": extractor}, reals.batches(), what="real")["i3d"]
  real_s = time.time() - start
  runs = []
  for lam in settings.lams:
    for seed in settings.seeds:
      config = run_config(settings, lam, seed)
      run_dir = str(Path(workdir) / f"lam{lam:g}_seed{seed}")
      t0 = time.time()
      last = train(config, run_dir)
      t1 = time.time()
      videos = _sample(config, run_dir, settings.num_videos)
      t2 = time.time()
      fake = extract({"i3d": extractor}, [videos], what="fake")["i3d"]
      score = fvd.frechet_distance(real, fake)
      runs.append(
        {
          "lam": lam,
          "seed": seed,
          "noise_mode": config.diffusion.noise_mode,
          "fvd": score,
          "final_loss": last.get("loss"),
          "frame_change": motion.frame_change(videos),
          "train_s": t1 - t0,
          "sample_s": t2 - t1,
          "score_s": time.time() - t2,
        }
      )
      if not settings.data_path:  # flat-background shapes: glide vs jitter
        runs[-1]["object_motion"] = motion.object_motion(videos)._asdict()
      logging.info("lam %g seed %d: FVD %.1f", lam, seed, score)
  return {
    "settings": dataclasses.asdict(settings),
    "runs": runs,
    "summary": summarise(runs),
    "real_features_s": real_s,
    "wall_s": time.time() - start,
    "extractor": extractor.describe(),
    **provenance.environment(),
  }


def format_table(result: dict) -> str:
  s = result["settings"]
  lines = [
    f"{provenance.describe(result)}; {len(s['seeds'])} seeds x "
    f"{s['train_steps']} steps of batch {s['batch_size']} "
    f"({s['num_frames']}x{s['image_size']}^2), {s['num_videos']} sampled vs "
    f"{s['num_real']} real videos, DDIM {s['sampler_steps']}; wall "
    f"{result['wall_s'] / 60:.1f} min",
    f"{'lam':<14} {'FVD mean':>9} {'+/- std':>8} {'min':>8} {'max':>8}  per seed",
  ]
  for lam, row in result["summary"].items():
    name = f"{lam} (standard)" if float(lam) == 0.0 else lam
    lines.append(
      f"{name:<14} {row['mean']:9.1f} {row['std']:8.1f} {row['min']:8.1f} "
      f"{row['max']:8.1f}  {', '.join(f'{v:.1f}' for v in row['fvd'])}"
    )
  return "\n".join(lines)


def _settings_from_flags() -> StudySettings:
  s = LARGE if _LARGE.value else CPU_DEFAULT
  changes = {}
  if _LAMS.value:
    changes["lams"] = tuple(float(v) for v in _LAMS.value)
  if _SEEDS.value:
    changes["seeds"] = tuple(int(v) for v in _SEEDS.value)
  if _STEPS.value:
    changes["train_steps"] = _STEPS.value
  if _VIDEOS.value:
    changes["num_videos"] = _VIDEOS.value
  if _DATA.value:
    changes["data_path"] = _DATA.value
  return dataclasses.replace(s, **changes)


def main(argv):
  del argv
  # The persistent compile cache, as `make` sets it: seeds of one lam share programs.
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update(
      "jax_compilation_cache_dir", str(Path(__file__).parents[1] / ".cache" / "jax")
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  result = run_study(_settings_from_flags(), _WORKDIR.value)
  provenance.emit(result, format_table(result), tag="DECOMP", json_path=_JSON.value)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a script (tests import the
  module next to other benchmarks, whose flags share names)."""
  global _LARGE, _LAMS, _SEEDS, _STEPS
  global _VIDEOS, _DATA, _WORKDIR, _JSON
  _LARGE = flags.DEFINE_bool("large", False, "The GPU setting (LARGE) instead of the CPU one.")
  _LAMS = flags.DEFINE_list("lams", None, "Override: lam values (0 = standard process).")
  _SEEDS = flags.DEFINE_list("seeds", None, "Override: seeds.")
  _STEPS = flags.DEFINE_integer("train_steps", 0, "Override: train steps per run.")
  _VIDEOS = flags.DEFINE_integer("num_videos", 0, "Override: sampled videos per run.")
  _DATA = flags.DEFINE_string(
    "data_path", "", "A local folder of videos instead of the synthetic shapes."
  )
  _WORKDIR = flags.DEFINE_string(
    "workdir", "runs/decomposition_study", "Where each run's checkpoints go."
  )
  _JSON = flags.DEFINE_string("json", "", "Also write the result to this JSON file.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
