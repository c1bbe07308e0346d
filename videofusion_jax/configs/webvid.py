"""WebVid-10M text-to-video at the paper's Table 9 sizes, for a TPU pod or a GPU cluster.

  python -m videofusion_jax.train --config=configs/webvid.py --workdir=gs://BUCKET/runs/webvid
  python -m videofusion_jax.train --config=configs/webvid.py:path=/data/webvid/videos ...

16 frames of 64x64 (the paper trains at 64x64, then super-resolves), base 512 /
residual 192 channels, mults 1,2,3,4, 3 layers per scale (2.00B / 0.59B in the paper).
bfloat16 compute with float32 parameters, rematerialised blocks and FSDP over 8 chips
per data replica: ~2.5B float32 parameters with Adam moments and the EMA take ~50 GB,
so each chip of a v5p/v6e slice holds 1/8 of them; the launch scripts in launch/ run
it on every host.

As in the paper (Sec 4.1) both generators are conditioned on the CLIP image embedding
of the clip's centre frame, read from a cache computed once (a CLIP ViT-L/14 converted
with `python -m videofusion_jax.convert clip`):

  python -m videofusion_jax.tools.clip_cache --config=configs/webvid.py \
      --clip=data/clip-vit-large-patch14 --out=data/webvid/clip_cache.npz

Text-to-video goes through the prior (configs/webvid_prior.py), trained on the same cache.
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments
from videofusion_jax.models import presets
from videofusion_jax.models.from_config import unet_fields

ARGS = Arguments("configs/webvid.py", main="path", keys=dict(path="data/webvid/videos"))


def get_config(arg: str = "", **defaults: str):
  path = ARGS.parse(arg, **defaults)["path"]
  c = base.get_config()
  c.data.source = "webvid"
  c.data.path = path  # WebVid mp4 files, <page_dir>/<videoid>.mp4
  c.data.webvid_csv = "data/webvid/results_10M_train.csv"
  c.data.clip_cache = "data/webvid/clip_cache.npz"
  c.data.num_frames = 16
  c.data.image_size = 64
  c.data.frame_stride = 4  # ~2 s of a 30 fps clip
  c.data.random_start = True
  c.data.worker_count = 8  # decoding is the host's job; keep chips fed
  c.data.download = (
    "WebVid-10M is distributed as a CSV of (videoid, contentUrl, page_dir, name); fetch "
    "the videos with its download tools (github.com/m-bain/webvid) into "
    "data/webvid/videos/<page_dir>/<videoid>.mp4, or pass the folder as "
    "configs/webvid.py:path=/path/to/videos. Nothing is downloaded at run time."
  )

  paper = presets.table9()
  c.model.base = unet_fields(paper.base)
  c.model.residual = unet_fields(paper.residual)
  c.model.dtype = "bfloat16"
  c.model.remat = True

  c.cond.kind = "image_embed"
  c.cond.embed_dim = 768  # CLIP ViT-L/14 image embeddings
  c.cond.extra_tokens = 4  # as unCLIP decoders: 4 extra attention tokens

  c.train.batch_size = 512
  c.train.ema_decay = 0.9999
  c.train.checkpoint_every = 2_000

  c.mesh.data = -1
  c.mesh.fsdp = 8
  c.mesh.tensor = 1
  return c
