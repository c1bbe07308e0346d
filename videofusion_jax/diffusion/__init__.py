"""Pure-JAX math of decomposed diffusion (VideoFusion): no Flax, no configs, no state.

Videos are channels-last `(B, N, H, W, C)` in [-1, 1]; the centre frame is (N - 1) // 2.
"""

from videofusion_jax.diffusion.decomposition import (
  NOISE_MODES,
  OBJECTIVES,
  DenoiseOutput,
  centre_index,
  compose_eps,
  compose_noise,
  decomposed_denoise,
  decomposed_noise,
  decomposed_noise_parts,
  eps_from_v,
  frame_lambdas,
  merge_centre,
  other_frame_indices,
  q_sample,
  remove_base_noise,
  sample_noise,
  split_centre,
  standard_denoise,
  standard_noise,
  v_target,
)
from videofusion_jax.diffusion.guidance import classifier_free_guidance
from videofusion_jax.diffusion.losses import decomposed_loss, standard_loss
from videofusion_jax.diffusion.samplers import (
  DDPM_VARIANCES,
  ddim_sample,
  ddim_step,
  ddpm_sample,
  ddpm_step,
  predict_x0,
)
from videofusion_jax.diffusion.schedules import (
  SCHEDULE_NAMES,
  Schedule,
  ddim_timesteps,
  make_schedule,
)
