"""One of two processes of a jax.distributed run on 127.0.0.1, started by
test_distributed.py from the repository root:
  python -m tests.parallel.two_processes PORT PROCESS_ID WORKDIR

Trains the tiny config for 2 steps through the real `train()` and prints its loss.
"""

import json
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

from videofusion_jax.configs import demo  # noqa: E402
from videofusion_jax.training.loop import train  # noqa: E402


def main(port: str, process_id: str, workdir: str) -> None:
  config = demo.get_config("setting=tiny")
  config.train.num_steps = 2
  config.train.batch_size = 4  # two clips per process
  config.train.allow_local_workdir_multihost = True  # one machine: the folder is shared
  config.distributed.enabled = "true"
  config.distributed.coordinator_address = f"127.0.0.1:{port}"
  config.distributed.num_processes = 2
  config.distributed.process_id = int(process_id)
  metrics = train(config, workdir)
  print(
    "RESULT "
    + json.dumps(
      {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "loss": metrics["loss"],
      }
    )
  )


if __name__ == "__main__":
  main(*sys.argv[1:])
