"""Train VideoFusion.

  python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo

Resumes from the latest checkpoint in --workdir. Override any config field on the
command line, e.g. `--config.train.num_steps=1000`. The exit code says how the run
ended (`cli.py`): 0 done, 75 preempted and saved (run the same command again), 3
diverged, 2 a bad config or input, 4 an unusable checkpoint folder, 1 anything else.
"""

from __future__ import annotations

import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from videofusion_jax import cli
from videofusion_jax.checkpoint import CheckpointError
from videofusion_jax.metric_writers import quiet_library_logs
from videofusion_jax.training.loop import outcome, train
from videofusion_jax.training.nonfinite import Diverged

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples.")


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {argv[1:]}", cli.BAD_INPUT)
  quiet_library_logs()
  logging.info("JAX process %d/%d, devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  config, workdir = _CONFIG.value, _WORKDIR.value
  try:
    metrics = train(config, workdir)
  except cli.ConfigError as e:
    cli.fail(e, cli.BAD_INPUT)
  except Diverged as e:
    cli.fail(e, cli.DIVERGED)
  except CheckpointError as e:
    cli.fail(e, cli.CHECKPOINT)
  ended = outcome(workdir, config.train.num_steps, metrics)
  print(ended.line)
  sys.exit(cli.PREEMPTED if ended.stopped_early else cli.DONE)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
