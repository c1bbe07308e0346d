"""`videofusion_jax.Pipeline` on a tiny trained workdir: the sample CLI's videos as
uint8 arrays, from the checkpoint's own config, with the CLI's seeds."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

import videofusion_jax
from videofusion_jax import sample as sample_cli
from videofusion_jax.configs import demo
from videofusion_jax.data import video_io
from videofusion_jax.sampling import controls, generate, run_config
from videofusion_jax.sampling.pipeline import Pipeline
from videofusion_jax.training.loop import train

# make test-flows: what a Colab user does, and ~3 min of compiles on 2 cores (the tiny
# workdir's train step and samplers), which kept make test over its 12 minutes.
pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """demo.py:setting=tiny trained for its 3 steps (the shapes tests/test_train.py
  compiles too): 4 frames of 16x16, 2 DDIM steps, batches of 2."""
  workdir = tmp_path_factory.mktemp("tiny")
  train(demo.get_config("setting=tiny"), str(workdir))
  return workdir


def written_arrays(write, config, workdir, monkeypatch) -> np.ndarray:
  """The videos `write(config, WORKDIR)` hands to the real `generate.write_samples`, as
  uint8 before the (lossy) mp4 encoding; `config`: the checkpoint's, checked against
  `config`, as the sample CLI computes it."""
  written, real = [], generate.write_samples

  def keep(batches, out_dir, **kwargs):
    batches = list(batches)
    written.extend(b if b.dtype == np.uint8 else video_io.to_uint8(b) for b in batches)
    return real(batches, out_dir, **kwargs)

  monkeypatch.setattr(generate, "write_samples", keep)
  write(run_config.checkpoint_config(config, str(workdir)).config, str(workdir))
  return np.concatenate(written)


def cli_arrays(config, workdir, monkeypatch) -> np.ndarray:
  """The videos the sample CLI's "videos" mode writes (`sample.write_videos`)."""
  return written_arrays(sample_cli.write_videos, config, workdir, monkeypatch)


@pytest.fixture(scope="module")
def pipe(workdir):
  return videofusion_jax.Pipeline.from_workdir(str(workdir))


def test_videos_are_uint8_and_the_seeds_decide_them(pipe):
  a = pipe(2, base_seed=3, residual_seed=4)
  assert a.shape == (2, 4, 16, 16, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(pipe(2, base_seed=3, residual_seed=4), a)
  other_base = pipe(2, base_seed=5, residual_seed=4)
  assert np.abs(other_base.astype(int) - a).mean() > 1
  assert len(pipe._samplers) == 1  # one sampler for every call of this shape
  (sampler,) = pipe._samplers.values()
  assert sampler.sample_fn._cache_size() == 1


def test_batches_come_one_sampler_batch_at_a_time_and_make_the_same_videos(pipe):
  """`batches` is what the sample CLI writes from, file by file as each batch is done."""
  with pytest.raises(ValueError, match="num_videos=0"):
    pipe.batches(0)  # checked at the call, before anything is sampled
  batches = list(pipe.batches(3, base_seed=3, residual_seed=4))
  assert [b.shape[0] for b in batches] == [2, 1]  # sample.batch_size 2, the last one short
  np.testing.assert_array_equal(np.concatenate(batches), pipe(3, base_seed=3, residual_seed=4))


def test_same_seeds_give_the_sample_clis_arrays_bitwise(pipe, workdir, tmp_path, monkeypatch):
  """What `python -m videofusion_jax.sample --config=configs/demo.py:setting=tiny
  --config.sample.base_seed=7 --config.sample.residual_seed=9` computes before it
  encodes the (lossy) mp4s: the arrays its "videos" mode hands to `write_samples`."""
  run = shutil.copytree(workdir, tmp_path / "run")
  config = demo.get_config("setting=tiny")
  config.sample.base_seed, config.sample.residual_seed = 7, 9
  config.sample.num_videos = 3  # batches of 2: the last one padded
  videos = pipe(3, base_seed=7, residual_seed=9)
  np.testing.assert_array_equal(videos, cli_arrays(config, run, monkeypatch))
  # ... and what `generate.sample(config, workdir)`, its Python function before the
  # Pipeline, still writes.
  np.testing.assert_array_equal(videos, written_arrays(generate.sample, config, run, monkeypatch))
  mp4s = sorted(p.name for p in (run / "samples").glob("*.mp4"))
  assert mp4s == ["video_000.mp4", "video_001.mp4", "video_002.mp4"]
  assert (run / "samples" / "strip.png").is_file()


def test_a_workdir_without_a_checkpoint_is_one_line_naming_it(tmp_path):
  with pytest.raises(FileNotFoundError) as error:
    Pipeline.from_workdir(str(tmp_path))
  message = str(error.value)
  assert f"no checkpoint in {tmp_path}/checkpoints" in message and "\n" not in message
  assert not (tmp_path / "checkpoints").exists()  # a reader creates nothing


def test_a_condition_the_model_does_not_take_is_refused(pipe):
  with pytest.raises(
    ValueError,
    match=r"class_id=2: this model is not class-conditioned "
    r"\(cond.kind='none'\)",
  ):
    pipe(1, class_id=2)
  with pytest.raises(ValueError, match="prompt='a cat': this model takes no text"):
    pipe(1, prompt="a cat")


def test_long_videos_and_the_lengths_the_window_allows(pipe):
  # window 4, overlap 2 (half): 4 + k * 2 frames
  with pytest.raises(ValueError, match=r"num_frames=7; .*stride=2 \(e\.g\. 6 or 8\)"):
    pipe(1, num_frames=7)
  long = pipe(1, base_seed=3, residual_seed=4, num_frames=6)
  assert long.shape == (1, 6, 16, 16, 3) and long.dtype == np.uint8
  np.testing.assert_array_equal(pipe(1, base_seed=3, residual_seed=4, num_frames=6), long)
  assert len(pipe._window_fns) == 1


def test_long_video_k_is_the_same_whatever_the_batch(pipe):
  three = pipe(3, base_seed=3, residual_seed=4, num_frames=6)  # batches of 2, one padded
  assert three.shape == (3, 6, 16, 16, 3)
  one = pipe(1, base_seed=3, residual_seed=4, num_frames=6)
  assert np.abs(three[:1].astype(int) - one).max() <= 1  # another batch shape: rounding
  assert np.abs(three[2].astype(int) - three[1]).mean() > 1


def test_seed_grid_rows_share_the_base_seeds_content(pipe):
  """`seed_grid(2, "both")`: video i * 2 + j of base offset i and residual offset j; with
  DDIM (eta = 0) the centre frame only ever sees the base generator."""
  grid = pipe.seed_grid(2, "both", base_seed=3, residual_seed=4)
  assert grid.shape == (4, 4, 16, 16, 3) and grid.dtype == np.uint8
  c = 1  # the centre of 4 frames
  np.testing.assert_array_equal(grid[0, c], grid[1, c])  # base offset 0, residuals 0 and 1
  np.testing.assert_array_equal(grid[2, c], grid[3, c])
  assert np.abs(grid[0, c].astype(int) - grid[2, c]).mean() > 1  # another base: other content
  assert np.abs(grid[0, 0].astype(int) - grid[1, 0]).mean() > 1  # another residual: motion
  # The grid's keys are the calls': video (0, 0) is video 0 of a call with the same seeds,
  # and a "base" grid is the "both" grid's first column.
  np.testing.assert_array_equal(grid[0], pipe(2, base_seed=3, residual_seed=4)[0])
  np.testing.assert_array_equal(pipe.seed_grid(2, "base", 3, 4), grid[[0, 2]])
  with pytest.raises(ValueError, match="sample.vary='motion'"):
    pipe.seed_grid(2, "motion")


def test_the_clis_seed_grid_writes_the_pipelines_arrays(pipe, workdir, tmp_path, monkeypatch):
  """`sample --vary=both --num_videos=2 --base_seed=3 --residual_seed=4`: the arrays it
  hands to `controls.write_seed_grid` (before the lossy mp4s) are `pipe.seed_grid`'s."""
  run = shutil.copytree(workdir, tmp_path / "run")
  config = demo.get_config("setting=tiny")
  config.sample.vary, config.sample.num_videos = "both", 2
  config.sample.base_seed, config.sample.residual_seed = 3, 4
  written, real = [], controls.write_seed_grid

  def keep(videos, out_dir, **kwargs):
    written.append(videos)
    return real(videos, out_dir, **kwargs)

  monkeypatch.setattr(controls, "write_seed_grid", keep)
  paths = sample_cli.seed_grid_files(
    run_config.checkpoint_config(config, str(run)).config, str(run)
  )
  np.testing.assert_array_equal(written[0], pipe.seed_grid(2, "both", 3, 4))
  assert [p.name for p in paths] == [
    "grid_both_b0_r0.mp4",
    "grid_both_b0_r1.mp4",
    "grid_both_b1_r0.mp4",
    "grid_both_b1_r1.mp4",
    "grid_both.png",
  ]


def test_save_writes_one_mp4_per_video(pipe, tmp_path):
  videos = pipe(2, base_seed=3, residual_seed=4)
  paths = pipe.save(videos, str(tmp_path / "out"))
  assert [p.name for p in paths] == ["video_000.mp4", "video_001.mp4"]
  for path, video in zip(paths, videos):
    decoded = video_io.read_video(path)
    assert decoded.shape == video.shape
    assert np.abs(decoded.astype(int) - video).mean() < 8  # mp4 is lossy
  with pytest.raises(ValueError, match="expected uint8"):
    pipe.save(videos.astype(np.float32), str(tmp_path / "out"))


def test_importing_the_package_does_not_import_jax():
  """The CLIs import `videofusion_jax` first; `Pipeline` loads only when asked for."""
  code = (
    "import sys, videofusion_jax; assert 'jax' not in sys.modules, 'jax imported'; "
    "from videofusion_jax import Pipeline; assert 'jax' in sys.modules"
  )
  subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.slow  # trains a second (class-conditioned) tiny model
def test_class_id_and_guidance_scale_condition_the_videos(tmp_path, monkeypatch):
  workdir = tmp_path / "class"
  train(demo.get_config("setting=tiny,cond=class"), str(workdir))
  pipe = Pipeline.from_workdir(str(workdir))
  one = pipe(2, base_seed=3, residual_seed=4, class_id=1)
  assert one.shape == (2, 4, 16, 16, 3)
  assert np.abs(pipe(2, base_seed=3, residual_seed=4, class_id=4).astype(int) - one).mean() > 0.5
  unguided = pipe(2, base_seed=3, residual_seed=4, class_id=1, guidance_scale=1.0)
  assert np.abs(unguided.astype(int) - one).mean() > 0.5
  assert len(pipe._samplers) == 2  # the guidance scale is compiled in
  # The CLI's --class_id=1: the same arrays.
  config = demo.get_config("setting=tiny,cond=class")
  config.sample.base_seed, config.sample.residual_seed = 3, 4
  config.sample.num_videos, config.sample.class_id = 2, 1
  np.testing.assert_array_equal(cli_arrays(config, workdir, monkeypatch), one)
  with pytest.raises(ValueError, match="long videos of conditioned models"):
    pipe(1, class_id=1, num_frames=6)


def test_an_experiment_config_with_allow_untrained_samples_fresh_weights(tmp_path):
  """`from_workdir(W, config)`: the sample CLI's rule, including its escape hatch."""
  config = demo.get_config("setting=tiny")
  config.sample.allow_untrained = True
  videos = Pipeline.from_workdir(str(tmp_path), config)(2, base_seed=3, residual_seed=4)
  assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
