"""Convert a PyTorch checkpoint into an orbax checkpoint for our NNX modules.

  python -m videofusion_jax.convert diffusers-unet --src=MODEL_DIR --out=OUT_DIR

MODEL_DIR is a diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors`
or `.bin`) of a `UNet2DModel` or `UNet2DConditionModel`, e.g. Karlo's `decoder/`. OUT_DIR
receives the parameters (orbax), `unet_config.json` and `config_snippet.py`; pass it to
training as `--config.train.init_base_from=OUT_DIR`.

  python -m videofusion_jax.convert clip --src=TRANSFORMERS_CLIP_DIR --out=OUT_DIR

TRANSFORMERS_CLIP_DIR holds `config.json` + `model.safetensors`/`pytorch_model.bin` of a
`CLIPModel`, `CLIPTextModelWithProjection` or `CLIPVisionModelWithProjection`; OUT_DIR
receives the towers (orbax), `clip_config.json` and the tokenizer's vocab/merges (from
SRC, `--tokenizer`, or SRC/../tokenizer); read it with `convert.load_clip(OUT_DIR)`.

  python -m videofusion_jax.convert diffusers-prior --src=PRIOR_DIR --out=OUT_DIR

PRIOR_DIR is a diffusers `PriorTransformer` folder (e.g. Karlo's `prior/`); OUT_DIR
receives the prior (orbax) and `prior_config.json`; read it with
`videofusion_jax.sampling.prior.load_prior(OUT_DIR)`.

  python -m videofusion_jax.convert unclip --src=PIPELINE_DIR --out=OUT_DIR

PIPELINE_DIR is a whole diffusers unCLIP pipeline (Karlo: model_index.json, decoder/,
text_proj/, prior/, super_res_first/, super_res_last/, text_encoder/, tokenizer/);
OUT_DIR receives decoder/ (with its condition/ and a VideoFusion config snippet), prior/,
super_res_first/, super_res_last/ and clip/ (see convert/diffusers_unclip.py).
"""

from __future__ import annotations

from absl import app, flags

from videofusion_jax.convert.diffusers_prior import convert_diffusers_prior
from videofusion_jax.convert.diffusers_unclip import convert_unclip_pipeline
from videofusion_jax.convert.diffusers_unet import convert_diffusers_unet
from videofusion_jax.convert.transformers_clip import convert_transformers_clip

KINDS = ("diffusers-unet", "clip", "diffusers-prior", "unclip")

_SRC = flags.DEFINE_string("src", None, "Source model folder.")
_OUT = flags.DEFINE_string("out", None, "Output folder (must not exist or be empty).")
_VARIANT = flags.DEFINE_string(
  "variant", None, "Weights variant, e.g. fp16 for diffusion_pytorch_model.fp16.safetensors."
)
_ALLOW_UNUSED = flags.DEFINE_multi_string(
  "allow_unused", [], "Regex of torch keys that may be left unused (repeatable)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a non-empty --out.")
_TOKENIZER = flags.DEFINE_string(
  "tokenizer",
  None,
  "clip: folder with vocab.json and merges.txt (default: --src, then --src/../tokenizer).",
)


def main(argv):
  if len(argv) != 2 or argv[1] not in KINDS:
    raise app.UsageError(f"expected one kind of conversion, one of {KINDS}; got {argv[1:]}")
  if not _SRC.value or not _OUT.value:
    raise app.UsageError("--src and --out are required")
  if argv[1] == "clip":
    out = convert_transformers_clip(
      _SRC.value,
      _OUT.value,
      tokenizer=_TOKENIZER.value,
      allow_unused=_ALLOW_UNUSED.value,
      overwrite=_OVERWRITE.value,
    )
    print(f"wrote {out}; load it with videofusion_jax.convert.load_clip({str(out)!r})")
    return
  if argv[1] == "diffusers-prior":
    out = convert_diffusers_prior(
      _SRC.value,
      _OUT.value,
      variant=_VARIANT.value,
      allow_unused=_ALLOW_UNUSED.value,
      overwrite=_OVERWRITE.value,
    )
    print(f"wrote {out}; load it with videofusion_jax.sampling.prior.load_prior({str(out)!r})")
    return
  if argv[1] == "unclip":
    out = convert_unclip_pipeline(
      _SRC.value,
      _OUT.value,
      variant=_VARIANT.value,
      allow_unused=_ALLOW_UNUSED.value,
      overwrite=_OVERWRITE.value,
    )
    print(
      f"wrote {out}; config lines for the base generator: {out / 'decoder' / 'config_snippet.py'}"
    )
    return
  out = convert_diffusers_unet(
    _SRC.value,
    _OUT.value,
    variant=_VARIANT.value,
    allow_unused=_ALLOW_UNUSED.value,
    overwrite=_OVERWRITE.value,
  )
  print(f"wrote {out}; config lines for model.base: {out / 'config_snippet.py'}")


if __name__ == "__main__":
  app.run(main)
