"""The unCLIP diffusion prior for WebVid text-to-video: caption -> CLIP image embedding.

  python -m videofusion_jax.train_prior --config=configs/webvid_prior.py --workdir=runs/prior \
      --config.data.clip_cache=data/webvid_clip.npz

The architecture is Karlo's prior (diffusers PriorTransformer defaults: 20 layers, 32 heads
of 64 channels, CLIP ViT-L/14's 768-d embeddings and 77 text tokens), so a converted
Karlo prior (`python -m videofusion_jax.convert diffusers-prior`) has the same shapes.
Every field of `model` is a `models.prior.PriorConfig` field.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  # The settings and their comments read as an aligned table: the formatter leaves them.
  # fmt: off
  c = ml_collections.ConfigDict()
  c.seed = 0                          # initialisation and batch order

  c.data = ml_collections.ConfigDict()
  c.data.source = "clip_cache"        # "clip_cache" (npz of CLIP embeddings) or "synthetic"
  c.data.clip_cache = ""              # the npz written by the CLIP precompute script
  c.data.num_examples = 4096          # size of the synthetic set

  c.model = ml_collections.ConfigDict()
  c.model.kind = "prior"              # not a video model: trained by train_prior
  c.model.num_attention_heads = 32
  c.model.attention_head_dim = 64
  c.model.num_layers = 20
  c.model.embedding_dim = 768         # CLIP embedding size = text hidden width (ViT-L/14)
  c.model.num_embeddings = 77         # text tokens (CLIP context); 0 = embedding only
  c.model.additional_embeddings = 4
  c.model.dropout = 0.0
  c.model.time_embed_act_fn = "silu"
  c.model.norm_in_type = placeholder(str)             # None or "layer"
  c.model.embedding_proj_norm_type = placeholder(str)  # None or "layer"
  c.model.encoder_hid_proj_type = "linear"  # None: no text tokens (num_embeddings = 0)
  c.model.added_emb_type = "prd"
  c.model.time_embed_dim = placeholder(int)
  c.model.embedding_proj_dim = placeholder(int)
  c.model.clip_embed_dim = placeholder(int)
  c.model.num_classes = 0             # > 0: class ids instead of text (UCF101)
  c.model.learned_null = True         # learned unconditional condition for CFG dropout;
                                      # False: the cache's empty-text encoding (Karlo)
  c.model.norm_eps = 1e-5

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.schedule = "cosine"     # Karlo: squaredcos_cap_v2, the same betas
  c.diffusion.num_timesteps = 1000

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 200_000
  c.train.batch_size = 256
  c.train.ema_decay = 0.9999
  c.train.cond_drop_prob = 0.1        # text condition dropped (-> null) for guidance
  c.train.log_every = 100
  c.train.checkpoint_every = 5_000
  c.train.max_checkpoints = 3
  c.train.tensorboard = True

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1.1e-4                 # DALL-E 2's prior (Table 3)
  c.optim.schedule = "cosine"
  c.optim.warmup_steps = 1_000
  c.optim.b1 = 0.9
  c.optim.b2 = 0.96
  c.optim.eps = 1e-6
  c.optim.weight_decay = 6.0e-2
  c.optim.grad_clip = 1.0

  c.sample = ml_collections.ConfigDict()
  c.sample.sampler = "ddim"           # or "ddpm" (all T steps)
  c.sample.num_steps = 25             # Karlo's prior_num_inference_steps
  c.sample.guidance_scale = 4.0       # Karlo's prior_guidance_scale
  c.sample.eta = 0.0
  c.sample.clip_range = 10.0          # clip x0 estimates (normalised), as Karlo's scheduler
  # fmt: on
  return c
