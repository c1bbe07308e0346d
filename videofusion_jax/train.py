"""Train VideoFusion.

  python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo

Resumes from the latest checkpoint in --workdir. Override any config field on the
command line, e.g. `--config.train.num_steps=1000`. The exit code says how the run
ended (`cli.py`): 0 done, 75 preempted by SIGTERM and saved (run the same command
again), 130 stopped by Ctrl-C and saved, 3 diverged, 2 a bad config or input, 4 an
unusable checkpoint folder, 1 anything else.
"""

from __future__ import annotations

import signal
import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from videofusion_jax import cli, parallel
from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.training.loop import outcome, train
from videofusion_jax.training.preemption import Preemption

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}", cli.BAD_INPUT)
  quiet_library_logs()
  config, workdir = _CONFIG.value, _WORKDIR.value
  # Before the log line below touches the devices: jax.distributed.initialize() refuses
  # to run after that, so a multi-host run would fail here.
  try:
    parallel.maybe_initialize_distributed(config.distributed)
  except ValueError as e:  # distributed.enabled
    raise cli.ConfigError(str(e)) from None
  logging.info(
    "JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(), jax.devices()
  )
  preemption = Preemption()
  try:
    metrics = train(config, workdir, preemption=preemption)  # failures: see cli.run
  finally:
    preemption.restore()
  ended = outcome(workdir, config.train.num_steps, metrics)
  print(ended.line)
  if not ended.stopped_early:
    sys.exit(cli.DONE)
  # SIGTERM is a preemption: the launchers restart the run. Ctrl-C is a person: no.
  sys.exit(cli.STOPPED if preemption.signal == signal.SIGINT else cli.PREEMPTED)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
