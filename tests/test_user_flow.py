"""What a user does first with their own videos, all through the CLIs in subprocesses:
train on a folder of real footage, sample without repeating the data overrides, score
the samples with evaluate, and sample a long video window by window (issue 32).

The footage is made here (tests/data/footage.py): photographs that scikit-image ships,
filmed along a panning camera path and encoded with PyAV as mp4, avi and webm at 24, 25
and 29.97 fps, at odd non-square sizes, one file 37 windows long and one with a scene
cut. The model is the tiny one of tests/test_faults.py (the demo's, on 4-frame 16x16
clips, batch 2), so the compiles come from the same persistent cache entries.

evaluate runs its own flag parsing and `main`, with the I3D network replaced by mean
colours per frame (as tests/metrics/test_evaluate.py does): FVD's I3D needs clips of 16
frames, the tiny model makes 4. What is checked is what the CLI counts, reads and writes.

`make test` runs the chain on a 2-step model (77-88 s of CPU measured on 2 loaded cores,
warm compilation cache): exit codes and artefacts; its videos are still noise, so the
long video is checked for its length only. `make test-slow` trains the same chain 300
steps, enough for pictures, and checks that a long video's windows after the first move
like the first at the default overlap (half the window), at 1 and at window - 1 (one new
frame per window, re-centred: diffusion/long_video.py).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.data import footage
from tests.test_faults import HANG, TINY
from videofusion_jax import cli
from videofusion_jax.data import video_io
from videofusion_jax.metrics.motion import frame_change

ROOT = Path(__file__).resolve().parents[1]

# name, photograph, frame rate, (height, width), frames, scene cut at (a frame)
FOOTAGE = (
  ("pan_24.mp4", "coffee", 24, (45, 61), 30, None),
  ("long_25.avi", "chelsea", 25, (48, 64), 150, None),  # 37 windows of 4
  ("cut_2997.webm", "astronaut", footage.NTSC, (37, 53), 24, 12),
)
WINDOW, SIZE = 4, 16  # test_faults' tiny run (demo.py's size)
TRAIN = [a for a in TINY[1:] if not a.startswith("--config.data.num_clips")]
assert f"--config.data.num_frames={WINDOW}" in TRAIN
# The sampler shape test_sample_config compiles (2 videos, 2 DDIM steps).
SAMPLE = ["--config.sample.num_steps=2", "--config.sample.num_videos=2"]

# evaluate's CLI (flags, main, exit codes) with a stand-in for the I3D network.
EVALUATE_WITH_STANDIN = """\
import sys
import numpy as np
from videofusion_jax import cli, evaluate
from videofusion_jax.metrics import evaluation
from videofusion_jax.metrics.features import FeatureExtractor

def mean_colour(videos):
  return videos.astype(np.float32).mean(axis=(2, 3)).reshape(len(videos), -1)

evaluation.default_extractors = lambda settings: {
    "i3d": FeatureExtractor("mean-colour", mean_colour, batch_size=2)}
sys.argv[0] = "evaluate"
cli.run(evaluate.main)
"""


def make_footage(folder: Path) -> list[Path]:
  paths = []
  for name, photo, rate, size, frames, cut in FOOTAGE:
    kind = name.split(".", 1)[1]
    video = footage.film(frames, rate, size, photo=photo, cut_at=cut)
    paths.append(footage.encode(folder / name, video, rate, kind=kind))
  return paths


def run_cli(module: str, *args: str, timeout: int = HANG) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", f"videofusion_jax.{module}", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def run_evaluate(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", EVALUATE_WITH_STANDIN, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=HANG,
  )


def window_changes(video: np.ndarray, overlap: int) -> np.ndarray:
  """Frame change (0..255) of each window of a long video (N, H, W, C): the frames of
  window w are w * (WINDOW - overlap) ... + WINDOW."""
  stride = WINDOW - overlap
  starts = range(0, len(video) - WINDOW + 1, stride)
  return np.array([frame_change(video[None, s : s + WINDOW]) for s in starts])


def user_chain(root: Path, train_steps: int, *train_flags: str, train_timeout: int = HANG):
  """Train, sample (2 videos of 2 DDIM steps) and evaluate as a user types them;
  returns (the --config flag, the workdir, {"train"|"sample"|"evaluate": the run})."""
  videos = root / "videos"
  make_footage(videos)
  config = f"--config=configs/folder.py:{videos}"
  workdir = root / "run"
  out = {
    "train": run_cli(
      "train",
      config,
      f"--workdir={workdir}",
      *TRAIN,
      f"--config.train.num_steps={train_steps}",
      *train_flags,
      timeout=train_timeout,
    )
  }
  assert out["train"].returncode == cli.DONE, out["train"].stderr[-3000:]
  # No --config.data.* here: the checkpoint's clip shape (4 x 16x16), not the file's 8.
  out["sample"] = run_cli("sample", config, f"--workdir={workdir}", *SAMPLE)
  assert out["sample"].returncode == cli.DONE, out["sample"].stderr[-3000:]
  out["evaluate"] = run_evaluate(
    f"--real={videos}",
    f"--fake={workdir / 'samples'}",
    "--metrics=fvd",
    f"--num_frames={WINDOW}",
    f"--image_size={SIZE}",
    f"--cache_dir={root / 'cache'}",
  )
  assert out["evaluate"].returncode == cli.DONE, out["evaluate"].stderr[-3000:]
  return config, workdir, out


def check_chain(workdir: Path, out, train_steps: int) -> None:
  """sample wrote 2 videos at the trained shape; evaluate scored those 2 (not their
  gifs, not the strip) against the 3 real files of 3 containers, and wrote the counts."""
  samples = workdir / "samples"
  first = out["sample"].stdout.splitlines()[0]
  assert (
    first.startswith(f"config: saved with step {train_steps} in ")
    and "data.num_frames=4 (file: 6)" in first
  ), out["sample"].stdout
  mp4s = sorted(samples.glob("*.mp4"))
  assert [p.name for p in mp4s] == ["video_000.mp4", "video_001.mp4"]
  for path in mp4s:
    assert video_io.read_video(path).shape == (WINDOW, SIZE, SIZE, 3)
  assert sorted(p.name for p in samples.iterdir() if p.suffix != ".mp4") == [
    "metrics.json",
    "strip.png",
    "video_000.gif",
    "video_001.gif",
  ]
  assert "videos scored: 2 fake, 3 real" in out["evaluate"].stdout, out["evaluate"].stdout
  saved = json.loads((samples / "metrics.json").read_text())
  assert saved["fake"]["count"] == len(mp4s) and saved["real"]["count"] == len(FOOTAGE)
  assert saved["protocol"]["extractors"]["i3d"]["name"] == "mean-colour"
  assert np.isfinite(saved["metrics"]["fvd"]) and saved["metrics"]["fvd"] >= 0


def long_video(config: str, workdir: Path, num_frames: int, *overrides: str):
  """One long video from the sample CLI: (its frames (N, H, W, C), the run)."""
  out = run_cli(
    "sample",
    config,
    f"--workdir={workdir}",
    f"--num_frames={num_frames}",
    "--num_videos=1",
    *overrides,
  )
  assert out.returncode == cli.DONE, out.stderr[-3000:]
  assert f"wrote 1 videos of {num_frames} frames" in out.stdout, out.stdout
  return video_io.read_video(workdir / "samples" / "long_000.mp4"), out


@pytest.mark.flow  # four CLI subprocesses: make test-flows
def test_train_sample_evaluate_and_a_long_video_through_the_clis(tmp_path):
  """The chain on a 2-step model (its videos are still noise): exit codes and artefacts.
  About 80 s of CPU with a warm compilation cache (train 40, sample 11, long video 15)."""
  config, workdir, out = user_chain(tmp_path, train_steps=2)
  check_chain(workdir, out, train_steps=2)
  num_frames = WINDOW + 3 * (WINDOW - WINDOW // 2)  # 4 windows, default overlap 2
  video, long_out = long_video(config, workdir, num_frames, *SAMPLE[:1])
  assert video.shape == (num_frames, SIZE, SIZE, 3)
  assert "long videos 4/4 windows" in long_out.stderr


# --- the same chain on a model trained long enough to make pictures (make test-slow) ----

TRAINED_STEPS = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """The chain after TRAINED_STEPS steps. The four slow tests together: 18 minutes on 2
  loaded cores at XLA's default optimisation (make test-slow), 926 s of CPU."""
  return user_chain(
    tmp_path_factory.mktemp("trained"),
    TRAINED_STEPS,
    "--config.train.checkpoint_every=100",
    "--config.train.log_every=50",
    train_timeout=3 * HANG,
  )


@pytest.mark.slow
def test_the_chain_on_a_trained_model(trained):
  _, workdir, out = trained
  check_chain(workdir, out, TRAINED_STEPS)


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [None, 1, WINDOW - 1])
def test_a_long_videos_later_windows_move_like_the_first(trained, overlap):
  """10 windows of 4 at the default overlap (None: half the window, so the centre frame
  of every later window is a known one), 1 and window - 1, 10 DDIM steps, eta 1 (the
  demo's): each later window's frame change within 2x of the first window's. Saturated
  noise changes 60-75/255 a frame here. Measured (0..255): default 12.6 then
  13.5-15.3 (21 windows: up to 18.3); overlap 1 12.6 then 12.3-13.3 (6 windows);
  overlap 3 (re-centred) 12.5 then 12.3-15.0 (21 windows: up to 18.4); before
  re-centring it grew 12.6 then 14.0 16.3 19.4 ... 39.7 at window 10, 75.5 at 21 (a
  strict xfail here until then). The data change 20.3/255 a frame (the camera pans fast
  at 16x16)."""
  config, workdir, _ = trained
  used = overlap or WINDOW // 2
  num_frames = WINDOW + 9 * (WINDOW - used)
  flags = [] if overlap is None else [f"--config.sample.overlap={overlap}"]
  video, out = long_video(config, workdir, num_frames, "--config.sample.num_steps=10", *flags)
  assert video.shape == (num_frames, SIZE, SIZE, 3)
  assert "long videos 10/10 windows" in out.stderr
  change = window_changes(video, used)
  assert len(change) == 10
  assert np.all(change[1:] < 2 * change[0]) and np.all(change[1:] > change[0] / 2), change
