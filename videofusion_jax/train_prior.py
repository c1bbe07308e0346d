"""Train the unCLIP diffusion prior (text or class -> CLIP image embedding).

  python -m videofusion_jax.train_prior --config=configs/webvid_prior.py --workdir=runs/prior

Reads the CLIP embedding cache named by `data.clip_cache`; resumes from the latest
checkpoint in --workdir. Sample with `prior_sampling.load_prior(WORKDIR)`.
"""

from __future__ import annotations

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.training.prior_loop import train_prior

_CONFIG = config_flags.DEFINE_config_file("config", None, "Prior config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_library_logs()
  logging.info("JAX devices: %s", jax.devices())
  metrics = train_prior(_CONFIG.value, _WORKDIR.value)
  print(f"prior training done in {_WORKDIR.value}: " +
        ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
