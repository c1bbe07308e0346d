"""Do shared base noise and a pretrained base help? Two resumable studies on the demo.

  make study                                              # both studies, into runs/study
  python -m benchmarks.decomposition_study --out=runs/study --budget_minutes=60   # in parts
  python -m benchmarks.decomposition_study --studies=decomposition --config_arg=setting=gpu

**Decomposition** (paper Table 5's question): lam in {0, 0.25, 0.5} x seeds {0, 1, 2}.
lam = 0 runs as the standard process (`diffusion.noise_mode = "standard"`: independent
noise per frame) with the same networks, so that arm is "no shared base noise".
**Pretraining** (paper Table 6): VideoFusion at lam 0.5 from scratch (the decomposition
study's lam 0.5 runs, shared) vs its base generator initialised from an image diffusion
model trained on single frames of the same data (`configs/demo_image.py`, one per seed).

Every video run trains `configs/demo.py` (its `--config_arg`: the recipe, taken from the
config, whatever it becomes) with the real loop for the same steps and batch, samples
`--num_videos` videos with the config's sampler (EMA weights), and is scored against
`--num_real` real clips of the same data: I3D FVD with a bootstrap interval, and the
samples' motion (object speed, straightness, distance from the centre frame) next to the
data's. I3D takes 16-frame clips: shorter clips have each frame repeated, real and
sampled alike (`study_runner.protocol_length`). Per arm: mean FVD and a 95% interval
across seeds; then one sentence, generated from the numbers (`study_stats.answer`).

Resumable (`study_runner.py`): each run's result is appended to OUT/results.jsonl as it
finishes, a rerun skips those and resumes the rest (training from its checkpoints),
`--budget_minutes` stops starting runs once spent (exit 75: rerun me; 0: all done).
The tables are written to OUT/decomposition.md and OUT/pretraining.md at every exit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import jax
import ml_collections
from absl import flags, logging

from benchmarks import provenance, study_runner, study_stats
from videofusion_jax import cli
from videofusion_jax.configs import demo, demo_image
from videofusion_jax.metrics import fvd

STUDIES = ("decomposition", "pretraining")
# An image run's config seed is this + the study's seed: its own initialisation and data
# order, not those of the video runs with the same seed (whose base would otherwise start
# from the very init the image run started from).
IMAGE_SEED_OFFSET = 1000


@dataclasses.dataclass(frozen=True)
class StudySettings:
  """Both studies' runs and how they are scored; the training recipe is the config's."""

  config_arg: str = ""  # configs/demo.py's argument, e.g. "setting=gpu"
  studies: tuple[str, ...] = STUDIES
  lams: tuple[float, ...] = (0.0, 0.25, 0.5)  # 0.0 runs as the standard process
  seeds: tuple[int, ...] = (0, 1, 2)
  pretrain_lam: float = 0.5  # the pretraining study's VideoFusion
  train_steps: int = 0  # 0: the recipe's train.num_steps (equal for every video run)
  image_steps: int = 0  # 0: configs/demo_image.py's train.num_steps
  num_videos: int = 256  # sampled per run
  num_real: int = 256  # real clips, shared by every run
  sampler_steps: int = 0  # 0: the recipe's sample.num_steps
  sample_batch: int = 32  # videos per sampler call (speed only)
  bootstrap: int = 200  # resamples per run's FVD interval

  def validate(self) -> None:
    bad = sorted(set(self.studies) - set(STUDIES))
    if not self.studies or bad:
      raise ValueError(f"studies={self.studies}; expected some of {STUDIES}")
    if not self.lams or any(not 0.0 <= lam < 1.0 for lam in self.lams):
      raise ValueError(f"lams={self.lams}; expected values in [0, 1)")
    if "decomposition" in self.studies and 0.0 not in self.lams:
      raise ValueError(f"lams={self.lams}; the decomposition study compares with lam=0")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds={self.seeds}; expected distinct seeds")
    if not 0.0 < self.pretrain_lam < 1.0:
      raise ValueError(f"pretrain_lam={self.pretrain_lam}; expected 0 < lam < 1")
    for name in ("train_steps", "image_steps", "sampler_steps"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name}={getattr(self, name)}; expected >= 0 (0: the config's)")
    for name in ("num_videos", "num_real"):
      if getattr(self, name) < 2:
        raise ValueError(f"{name}={getattr(self, name)}; FVD needs >= 2 videos per side")
    for name in ("sample_batch", "bootstrap"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)}; expected >= 1")


def _steps(c: ml_collections.ConfigDict, steps: int) -> None:
  """Train for `steps` (the config's when 0), with the warmup scaled alike."""
  t = c.train
  if steps and steps != t.num_steps:
    c.optim.warmup_steps = int(c.optim.warmup_steps * steps / t.num_steps)
    t.num_steps = steps
  t.checkpoint_every = min(t.checkpoint_every, t.num_steps)
  t.sample_every, t.tensorboard = 0, False


def video_config(settings: StudySettings, lam: float, seed: int) -> ml_collections.ConfigDict:
  """One video run: configs/demo.py's recipe at `lam` (0: the standard process)."""
  c = demo.get_config(settings.config_arg)
  c.seed = seed
  c.diffusion.lam = lam
  c.diffusion.noise_mode = "standard" if lam == 0.0 else "decomposed"
  _steps(c, settings.train_steps)
  if settings.sampler_steps:
    c.sample.num_steps = settings.sampler_steps
  c.sample.batch_size = min(settings.sample_batch, settings.num_videos)
  return c


def image_config(settings: StudySettings, seed: int) -> ml_collections.ConfigDict:
  """The base generator trained as an image model (configs/demo_image.py) for `seed`."""
  c = demo_image.get_config(settings.config_arg)
  c.seed = IMAGE_SEED_OFFSET + seed
  _steps(c, settings.image_steps)
  return c


def _lam_run(settings: StudySettings, lam: float, seed: int) -> study_runner.Run:
  mode = "standard" if lam == 0.0 else "decomposed"
  return study_runner.Run(
    f"lam{lam:g}_seed{seed}",
    seed,
    video_config(settings, lam, seed),
    describe={"lam": lam, "noise_mode": mode, "base": "scratch"},
  )


def runs(settings: StudySettings) -> list[study_runner.Run]:
  """Every run, seed by seed (a study stopped early has all arms of its first seeds)."""
  out, listed = [], set()

  def add(run):
    if run.run_id not in listed:
      out.append(run)
      listed.add(run.run_id)

  pl = settings.pretrain_lam
  for seed in settings.seeds:
    if "decomposition" in settings.studies:
      for lam in settings.lams:
        add(_lam_run(settings, lam, seed))
    if "pretraining" in settings.studies:
      add(_lam_run(settings, pl, seed))  # from scratch: shared with the decomposition study
      image = f"image_seed{seed}"
      add(study_runner.Run(image, seed, image_config(settings, seed), kind="image_base"))
      add(
        study_runner.Run(
          f"lam{pl:g}_pretrained_seed{seed}",
          seed,
          video_config(settings, pl, seed),
          base_from=image,
          describe={"lam": pl, "noise_mode": "decomposed", "base": "image-pretrained"},
        )
      )
  return out


def _label(lam: float) -> str:
  return "independent noise (lam=0)" if lam == 0.0 else f"lam={lam:g}"


def arms(settings: StudySettings, results: dict[str, dict], study: str):
  """(arms, reference label) of one study from the finished records."""

  def arm(label, ids):
    return study_stats.Arm(label, tuple(results[i] for i in ids if i in results), len(ids))

  seeds = settings.seeds
  if study == "decomposition":
    out = [arm(_label(lam), [f"lam{lam:g}_seed{s}" for s in seeds]) for lam in settings.lams]
    return out, _label(0.0)
  pl = settings.pretrain_lam
  scratch = f"from scratch (lam={pl:g})"
  return [
    arm(scratch, [f"lam{pl:g}_seed{s}" for s in seeds]),
    arm(f"image-pretrained base (lam={pl:g})", [f"lam{pl:g}_pretrained_seed{s}" for s in seeds]),
  ], scratch


def report(settings: StudySettings, out: str | Path, study: str) -> str:
  """The study's markdown: what ran, the table, and the one-sentence answer."""
  results = study_runner.read_results(out)
  study_arms, reference = arms(settings, results, study)
  real = study_runner.read_real(out)
  data_motion = real["motion"] if real else None
  video = video_config(settings, settings.pretrain_lam, settings.seeds[0])
  done = [r for a in study_arms for r in a.runs]
  commits = sorted({r["commit"] for r in done}) or ["none yet"]
  extractor = sorted({r["extractor"] for r in done}) or ["not run yet"]
  header = (
    f"{study} study: configs/demo.py:{settings.config_arg or 'setting=cpu'}, "
    f"{video.train.num_steps} steps of batch {video.train.batch_size} per run, "
    f"{video.data.num_frames} frames of {video.data.image_size}x{video.data.image_size}, "
    f"{settings.num_videos} sampled vs {settings.num_real} real videos, "
    f"{video.sample.sampler} {video.sample.num_steps} steps (eta {video.sample.eta}), "
    f"{settings.bootstrap} bootstrap resamples; features {', '.join(extractor)}; "
    f"{provenance.device()}; run at commit(s) {', '.join(commits)}"
  )
  table = study_stats.markdown_table(study_arms, data_motion)
  return f"{header}\n\n{table}\n\n{study_stats.answer(study_arms, reference)}\n"


def study(
  settings: StudySettings,
  out: str | Path,
  *,
  extractor_factory=None,
  budget_minutes: float | None = None,
) -> study_runner.Status:
  """Run (or resume) the studies and write OUT/<study>.md for each."""
  settings.validate()
  status = study_runner.run_study(
    runs(settings),
    out,
    settings=dataclasses.asdict(settings),
    extractor_factory=extractor_factory or (lambda: fvd.i3d_extractor(batch_size=8)),
    num_videos=settings.num_videos,
    num_real=settings.num_real,
    bootstrap=settings.bootstrap,
    budget_minutes=budget_minutes,
  )
  for name in settings.studies:
    text = report(settings, out, name)
    (Path(out) / f"{name}.md").write_text(text)
    print(text)
  return status


def _settings_from_flags() -> StudySettings:
  changes = {"config_arg": _CONFIG_ARG.value, "studies": tuple(_STUDIES.value)}
  if _LAMS.value:
    changes["lams"] = tuple(float(v) for v in _LAMS.value)
  if _SEEDS.value:
    changes["seeds"] = tuple(int(v) for v in _SEEDS.value)
  for name, flag in _INTS.items():
    if flag.value is not None:
      changes[name] = flag.value
  return dataclasses.replace(StudySettings(), **changes)


def main(argv):
  del argv
  # The persistent compile cache, as `make` sets it: the seeds of an arm share programs.
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update(
      "jax_compilation_cache_dir", str(Path(__file__).parents[1] / ".cache" / "jax")
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  try:
    settings = _settings_from_flags()
    settings.validate()
  except ValueError as e:
    raise cli.ConfigError(str(e)) from None
  status = study(settings, _OUT.value, budget_minutes=_BUDGET.value)
  if status.code != cli.DONE:
    print(
      f"not finished: {status.done} of {status.total} runs done; run the same command "
      "again to go on (finished runs are kept)",
      file=sys.stderr,
    )
  logging.info("%d of %d runs done", status.done, status.total)
  sys.exit(status.code)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a script (tests import the module
  next to other benchmarks, whose flags share names)."""
  global _OUT, _BUDGET, _CONFIG_ARG, _STUDIES, _LAMS, _SEEDS, _INTS
  _OUT = flags.DEFINE_string("out", "runs/study", "Study folder: results, workdirs, tables.")
  _BUDGET = flags.DEFINE_float(
    "budget_minutes", None, "Start no new run after this many minutes (exit 75 if unfinished)."
  )
  _CONFIG_ARG = flags.DEFINE_string(
    "config_arg", "", "configs/demo.py's argument (the recipe), e.g. setting=gpu."
  )
  _STUDIES = flags.DEFINE_list("studies", list(STUDIES), "Which studies to run.")
  _LAMS = flags.DEFINE_list("lams", None, "Override: lam values (0 = standard process).")
  _SEEDS = flags.DEFINE_list("seeds", None, "Override: seeds.")
  _INTS = {
    name: flags.DEFINE_integer(name, None, f"Override StudySettings.{name}.")
    for name in (
      "train_steps",
      "image_steps",
      "num_videos",
      "num_real",
      "sampler_steps",
      "sample_batch",
      "bootstrap",
    )
  }


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
