"""Train VideoFusion.

  python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo

Resumes from the latest checkpoint in --workdir. Override any config field on the
command line, e.g. `--config.train.num_steps=1000`.
"""

from __future__ import annotations

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.training.loop import outcome, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_library_logs()
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  metrics = train(_CONFIG.value, _WORKDIR.value)
  print(outcome(_WORKDIR.value, _CONFIG.value.train.num_steps, metrics))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
