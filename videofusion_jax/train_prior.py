"""Train the unCLIP diffusion prior (text or class -> CLIP image embedding).

  python -m videofusion_jax.train_prior --config=configs/webvid_prior.py --workdir=runs/prior

Reads the CLIP embedding cache named by `data.clip_cache`; resumes from the latest
checkpoint in --workdir. Sample with `videofusion_jax.sampling.prior.load_prior(WORKDIR)`.
"""

from __future__ import annotations

import signal
import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from videofusion_jax import cli
from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.training.loop import outcome
from videofusion_jax.training.preemption import Preemption
from videofusion_jax.training.prior_loop import train_prior

_CONFIG = config_flags.DEFINE_config_file("config", None, "Prior config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}", cli.BAD_INPUT)
  quiet_library_logs()
  logging.info("JAX devices: %s", jax.devices())
  config, workdir = _CONFIG.value, _WORKDIR.value
  preemption = Preemption()
  try:
    metrics = train_prior(config, workdir, preemption=preemption)  # failures: cli.run
  finally:
    preemption.restore()
  ended = outcome(workdir, config.train.num_steps, metrics)
  print(f"prior {ended.line}")
  if not ended.stopped_early:
    sys.exit(cli.DONE)
  # The train CLI's codes: SIGTERM is a preemption the launchers restart, Ctrl-C a person.
  sys.exit(cli.STOPPED if preemption.signal == signal.SIGINT else cli.PREEMPTED)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
