"""Text-to-video from a fresh workdir, the paper's Sec 4.1 chain at toy size: CLIP cache
of the clips -> prior trained on it -> video model trained on the image embeddings ->
`sample --prompts_file` (CLIP text tower, prior, guided video sampler).

Slow (five small models compile): `make test-slow`.
"""

import logging

import numpy as np
import pytest

from configs import demo, prior_synthetic
from tests.models.tiny_clip import save_random_clip
from videofusion_jax.data import video_io
from videofusion_jax.sampling.generate import sample
from videofusion_jax.tools.clip_cache import build_clip_cache
from videofusion_jax.training.loop import train
from videofusion_jax.training.prior_loop import train_prior


def _video_config(cache):
  c = demo.get_config()
  c.data.num_clips, c.data.num_frames = 8, 4
  c.data.clip_cache = str(cache)
  c.cond.kind, c.cond.embed_dim, c.cond.extra_tokens = "image_embed", 16, 2
  c.train.num_steps, c.train.batch_size, c.train.log_every = 2, 2, 1
  c.train.tensorboard = False
  c.sample.num_steps = 2
  return c


@pytest.mark.slow
def test_prompts_file_samples_one_video_per_prompt(tmp_path, caplog):
  clip, _ = save_random_clip(tmp_path)
  video_config = _video_config(tmp_path / "cache.npz")
  build_clip_cache(video_config, clip, video_config.data.clip_cache, batch_size=4)

  prior_config = prior_synthetic.get_config()
  prior_config.data.source, prior_config.data.clip_cache = (
    "clip_cache",
    str(video_config.data.clip_cache),
  )
  prior_config.model.num_embeddings, prior_config.model.encoder_hid_proj_type = 0, None
  prior_config.train.num_steps, prior_config.train.batch_size = 2, 4
  prior_config.sample.num_steps = 2
  train_prior(prior_config, str(tmp_path / "prior"))

  train(video_config, str(tmp_path / "video"))
  prompts = ["a cat sitting on the mat", "", "aerial view of a city at night " * 4]
  (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
  s = video_config.sample
  s.prompts_file, s.clip_dir, s.prior_workdir = (
    str(tmp_path / "prompts.txt"),
    str(clip),
    str(tmp_path / "prior"),
  )
  s.num_videos = s.batch_size = 3
  with caplog.at_level(logging.WARNING):
    paths = sample(video_config, str(tmp_path / "video"))
  assert "truncated" in caplog.text  # the long prompt exceeds the 12-token context
  videos = [video_io.read_video(p) for p in paths if p.suffix == ".mp4"]
  assert [v.shape for v in videos] == [(4, 16, 16, 3)] * 3
  listing = (tmp_path / "video" / "samples" / "prompts.txt").read_text(encoding="utf-8")
  assert listing.splitlines()[:2] == ["video_000.mp4\ta cat sitting on the mat", "video_001.mp4\t"]
  assert not np.array_equal(videos[0], videos[1])


def test_prompts_need_the_clip_and_prior_folders(tmp_path):
  from videofusion_jax.models.conditioning import ConditionConfig
  from videofusion_jax.sampling.conditions import sample_conditions

  config = demo.get_config()
  config.sample.prompt = "a cat"
  with pytest.raises(ValueError, match=r"text prompts need sample.clip_dir"):
    sample_conditions(config, ConditionConfig(kind="image_embed", embed_dim=16), 2)
  config.sample.prompts_file = str(tmp_path / "none.txt")
  with pytest.raises(
    FileNotFoundError,
    match=r"sample.prompts_file=.*none.txt does not "
    r"exist",
  ):
    sample_conditions(config, ConditionConfig(kind="image_embed", embed_dim=16), 2)
