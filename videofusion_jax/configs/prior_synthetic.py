"""A tiny prior on a synthetic embedding set: trains on a laptop CPU in seconds.

  python -m videofusion_jax.train_prior --config=configs/prior_synthetic.py \\
      --workdir=runs/prior_tiny

The image embedding is a fixed function of the text embedding (training/prior_data.py),
so the trained prior can be checked against it (tests/test_prior_training.py).
"""

from videofusion_jax.configs import webvid_prior


def get_config():
  c = webvid_prior.get_config()
  c.data.source = "synthetic"
  c.data.num_examples = 512
  c.model.num_attention_heads = 2
  c.model.attention_head_dim = 16
  c.model.num_layers = 2
  c.model.embedding_dim = 16
  c.model.num_embeddings = 4
  c.diffusion.num_timesteps = 100
  c.train.num_steps = 400
  c.train.batch_size = 64
  c.train.ema_decay = 0.99
  c.train.log_every = 50
  c.train.checkpoint_every = 200
  c.train.tensorboard = False
  c.optim.lr = 2e-3
  c.optim.schedule = "constant"
  c.optim.warmup_steps = 20
  c.optim.b2 = 0.999
  c.optim.weight_decay = 0.0
  c.sample.num_steps = 20
  c.sample.guidance_scale = 1.0
  return c
