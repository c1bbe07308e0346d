"""`Pipeline.from_workdir(W, superres_workdir=DIR)`: the cascade as arrays, the same as
the sample CLI's cascade mode writes, and as the two stages computed one after the other
(`VideoSampler` for the base videos, then `cascade.superres_batches`).

Both models are fresh weights (`sample.allow_untrained`): the tiny base of
demo.py:setting=tiny (4 frames of 16x16) and its tiny SR stage (16 -> 32,
demo.py:setting=tiny,stage=sr), 2 DDIM steps each."""

import numpy as np
import pytest

from videofusion_jax import sample as sample_cli
from videofusion_jax.cli import ConfigError
from videofusion_jax.configs import demo
from videofusion_jax.data import video_io
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.sampling import cascade, generate
from videofusion_jax.sampling.pipeline import Pipeline


def base_config():
  c = demo.get_config("setting=tiny")
  c.sample.allow_untrained = True
  c.sample.base_seed, c.sample.residual_seed, c.sample.num_videos = 7, 9, 3  # batches 2 + 1
  return c


def sr_config():
  c = demo.get_config("setting=tiny,stage=sr")
  c.data.num_frames = 4
  c.sample.num_steps = 2
  c.sample.batch_size = 2
  c.sample.base_seed, c.sample.residual_seed = 5, 6  # the SR stage's own seeds
  c.sample.allow_untrained = True
  return c


@pytest.fixture
def dirs(tmp_path):
  base, sr = tmp_path / "base", tmp_path / "sr"
  (sr / "checkpoints").mkdir(parents=True)  # an SR training workdir, not trained yet
  return str(base), str(sr)


def test_cascade_equals_the_cli_and_the_two_stages_one_after_the_other(dirs, monkeypatch):
  base_dir, sr_dir = dirs
  pipe = Pipeline.from_workdir(
    base_dir, base_config(), superres_workdir=sr_dir, superres_config=sr_config()
  )
  videos = pipe(3, base_seed=7, residual_seed=9)
  assert videos.shape == (3, 4, 32, 32, 3) and videos.dtype == np.uint8 and pipe.image_size == 32

  # The sample CLI's cascade mode: what it hands to write_samples (before the mp4s).
  written, real = [], generate.write_samples

  def keep(batches, out_dir, **kwargs):
    batches = list(batches)
    written.append(np.concatenate([np.asarray(b) for b in batches]))
    return real(batches, out_dir, **kwargs)

  monkeypatch.setattr(generate, "write_samples", keep)
  low_paths, high_paths = sample_cli.cascade_files(base_config(), base_dir, sr_dir, sr_config())
  assert [p.parent.name for p in (low_paths[0], high_paths[0])] == ["samples", "samples_32"]
  low, high = written
  np.testing.assert_array_equal(high, videos)

  # The two stages by hand: the base sampler, then the SR stage on its float videos.
  config = base_config()
  graphdef, state = generate.load_ema_params(model_spec(config), config, base_dir)
  sampler = generate.VideoSampler(
    graphdef,
    model_spec(config).config,
    num_frames=4,
    image_size=16,
    batch_size=2,
    config=generate.sampler_config(config),
  )
  schedule = pipe.schedule
  floats = np.concatenate(
    list(sampler.batches(state, schedule, num_videos=3, base_seed=7, residual_seed=9))
  )
  np.testing.assert_array_equal(low, video_io.to_uint8(floats))
  by_hand = np.concatenate(list(cascade.superres_batches(sr_config(), sr_dir, floats)))
  np.testing.assert_array_equal(videos, video_io.to_uint8(by_hand))

  # The SR stage's seeds are its config's: other base seeds change the videos, and
  # `cascade` gives both stages.
  low2, high2 = pipe.cascade(3, base_seed=8, residual_seed=9)
  assert low2.shape == (3, 4, 16, 16, 3) and np.abs(low2.astype(int) - low).mean() > 1
  assert len(pipe.superres._samplers) == 1  # one SR sampler for every call of this shape
  with pytest.raises(ValueError, match="long videos through the SR stage are not supported"):
    pipe(1, num_frames=6)


def test_an_sr_workdir_as_the_base_and_mismatched_stages_are_refused(dirs):
  base_dir, sr_dir = dirs
  with pytest.raises(ConfigError, match=r"pass it as the SR stage of one: .*superres_workdir="):
    Pipeline(sr_config(), sr_dir)
  with pytest.raises(ValueError, match="image_size=32 but the SR model takes"):
    config = base_config()
    config.data.image_size = 32
    Pipeline(config, base_dir, superres_workdir=sr_dir, superres_config=sr_config())
  with pytest.raises(ValueError, match="has no SR stage"):
    Pipeline(base_config(), base_dir).cascade(1)
