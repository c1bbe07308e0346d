"""A trained base generator as a converted U-Net folder, for `train.init_base_from`.

  python -m benchmarks.study_image_base --config=configs/demo_image.py \
      --workdir=runs/demo_image --out=runs/demo_image/base_unet

The pretraining study (`decomposition_study.py`, paper Table 6) trains the demo's base
generator as an image diffusion model (`configs/demo_image.py`) and starts VideoFusion
from it. `train.init_base_from` reads the folder `python -m videofusion_jax.convert
diffusers-unet` writes (`convert/converted.py`); this writes the same folder from the
EMA parameters of a workdir's latest checkpoint, so a model the project trained itself
goes through the same door as a converted diffusers U-Net.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections
from absl import flags
from flax import nnx
from ml_collections import config_flags

from videofusion_jax import cli
from videofusion_jax.convert.converted import save_converted
from videofusion_jax.models.from_config import model_spec
from videofusion_jax.models.videofusion import VideoFusionConfig
from videofusion_jax.sampling.generate import load_ema_params


def export_base(config: ml_collections.ConfigDict, workdir: str, out_dir: str) -> Path:
  """Write the EMA base generator of WORKDIR's latest checkpoint to `out_dir` (replaced
  if there; written under a temporary name first, so a killed export leaves nothing)."""
  spec = model_spec(config)
  if not isinstance(spec.config, VideoFusionConfig):
    raise cli.ConfigError(
      f"model.kind={config.model.kind!r}: only a VideoFusion has a base generator to export"
    )
  _, ema = load_ema_params(spec, config, workdir)
  params = nnx.to_pure_dict(ema)["base"]
  return save_converted(
    out_dir,
    params,
    spec.config.base_unet(),
    source={
      "path": str(workdir),
      "class_name": "VideoFusion base generator (EMA), benchmarks/study_image_base.py",
      "sample_size": config.data.image_size,
    },
    overwrite=True,
  )


def main(argv):
  del argv
  try:
    out = export_base(_CONFIG.value, _WORKDIR.value, _OUT.value)
  except FileNotFoundError as e:  # no checkpoint in --workdir: one line, exit 2
    raise cli.ConfigError(str(e)) from None
  print(f"base generator written to {out} (train.init_base_from={out})")


if __name__ == "__main__":
  _CONFIG = config_flags.DEFINE_config_file("config", None, "The config the workdir trained.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "The trained run's workdir.", required=True)
  _OUT = flags.DEFINE_string("out", None, "The folder to write.", required=True)
  flags.mark_flag_as_required("config")
  cli.run(main)
