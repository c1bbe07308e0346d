"""Convert PyTorch (diffusers) weights into our NNX modules.

  python -m videofusion_jax.convert diffusers-unet --src=MODEL_DIR --out=OUT_DIR
  python -m videofusion_jax.convert clip --src=TRANSFORMERS_CLIP_DIR --out=OUT_DIR

Reading `.safetensors` needs no torch; `.bin` pickles need the `[convert]` extra.
"""

from videofusion_jax.convert.clip_checkpoint import LoadedCLIP, load_clip
from videofusion_jax.convert.converted import (
  load_converted,
  load_converted_config,
  load_unet,
  unet_with_params,
)
from videofusion_jax.convert.diffusers_config import unet_config_from_diffusers
from videofusion_jax.convert.diffusers_unet import (
  convert_diffusers_unet,
  convert_state_dict,
  convert_unet,
  param_table,
)
