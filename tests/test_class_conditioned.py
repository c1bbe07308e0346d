"""Class conditioning learns what the class means: a tiny model trained on synthetic clips
whose colour is their class samples videos of each class's colour (issue 6).

Slow (about a minute of training on an idle 2-core CPU): `make test-slow`.
"""

import numpy as np
import pytest

from configs import demo_class
from videofusion_jax.data import video_io
from videofusion_jax.data.synthetic import NUM_COLOURS, class_colour, foreground_colour
from videofusion_jax.sampling.generate import sample
from videofusion_jax.training.loop import train


@pytest.mark.slow
def test_samples_of_each_class_take_the_class_colour(tmp_path):
  config = demo_class.get_config()
  config.data.num_frames = 4
  config.train.num_steps = 300
  config.train.batch_size = 16
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  config.train.tensorboard = False
  config.sample.num_steps = 20
  config.sample.guidance_scale = 3.0
  train(config, str(tmp_path))
  paths = sample(config, str(tmp_path))  # video k has class k (sample.class_id = -1)
  videos = np.stack([video_io.read_video(p) for p in paths if p.suffix == ".mp4"])
  colours = foreground_colour(videos.astype(np.float32) / 127.5 - 1.0)
  palette = np.stack([class_colour(k) for k in range(NUM_COLOURS)])
  dist = np.linalg.norm(colours[:, None] - palette[None], axis=-1)  # (video, class)
  own = np.diag(dist)
  others = dist[~np.eye(NUM_COLOURS, dtype=bool)].reshape(NUM_COLOURS, -1)
  # Measured at 300 steps: own 0.75 vs others 1.4 on average; red, green and blue
  # (classes 0-2, the most distinct colours) are each nearest to their own class.
  assert own.mean() < 0.7 * others.mean(), (own, others.mean(axis=1))
  assert list(dist[:3, :3].argmin(axis=1)) == [0, 1, 2], dist[:3, :3]
