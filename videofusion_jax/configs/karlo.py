"""VideoFusion from a converted Karlo (unCLIP) pipeline: its decoder is the base generator.

  python -m videofusion_jax.convert unclip --src=karlo-v1-alpha --out=data/karlo_jax
  python -m videofusion_jax.tools.clip_cache --config=configs/karlo.py:path=data/karlo_jax \
      --clip=data/clip-vit-large-patch14 --out=data/webvid/karlo_cache.npz --text_hidden
  python -m videofusion_jax.train --config=configs/karlo.py:path=data/karlo_jax \
      --config.data.path=data/webvid/videos --workdir=runs/karlo
  python -m videofusion_jax.sample --config=configs/karlo.py:path=data/karlo_jax \
      --workdir=runs/karlo --prompt="a red panda eating bamboo"

The key `path` (a bare `karlo.py:DIR` still means `path=DIR`) is the `convert unclip`
output folder. Its `decoder/config_snippet.py`
(written by the converter from the decoder's and text_proj's configs) sets model.base,
cond (kind "unclip": the image embedding, the caption's CLIP text embedding and hidden
states through Karlo's text_proj), data.channels/image_size (64) and
train.init_base_from, so the base generator starts as Karlo's decoder, as the paper
starts from DALL-E 2's (Sec 4.1). The residual generator is the paper's WebVid one
(Table 9), random. The cache must be made with a CLIP ViT-L/14 converted with both
towers (`convert clip`; Karlo's text encoder is its text tower) and `--text_hidden`;
sampling uses the pipeline's own CLIP text tower and prior (OUT/clip, OUT/prior).
Clips dropped for guidance (train.cond_drop_prob) see the learned null image embedding
and the empty caption's text encoding, as Karlo's unconditional branch.
"""

from pathlib import Path

from videofusion_jax.configs import webvid
from videofusion_jax.configs.arguments import Arguments

SNIPPET = Path("decoder") / "config_snippet.py"
ARGS = Arguments("configs/karlo.py", main="path", keys=dict(path="data/karlo_jax"))


def get_config(arg: str = "", **defaults: str):
  converted = ARGS.parse(arg, **defaults)["path"]
  snippet_file = Path(converted) / SNIPPET
  if not snippet_file.is_file():
    raise FileNotFoundError(
      f"configs/karlo.py:path={converted}: {snippet_file} does not exist; convert the "
      f"Karlo pipeline first: python -m videofusion_jax.convert unclip --src=<karlo-v1-alpha "
      f"folder> --out={converted}"
    )
  c = webvid.get_config()
  scope = {}
  exec(compile(snippet_file.read_text(), str(snippet_file), "exec"), scope)  # noqa: S102
  scope["apply"](c)  # model.base, cond, data.channels/image_size, init_base_from
  c.data.clip_cache = "data/webvid/karlo_cache.npz"  # tools.clip_cache --text_hidden
  c.optim.base_lr_scale = 0.1  # the pretrained decoder moves slowly
  c.sample.clip_dir = str(Path(converted) / "clip")
  c.sample.prior_workdir = str(Path(converted) / "prior")
  c.sample.guidance_scale = 3.0  # Karlo's decoder default is 8; the paper uses 3
  return c
