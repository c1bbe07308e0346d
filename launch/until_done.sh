#!/usr/bin/env bash
# Run a train command, and run it again while it exits 75: preempted by SIGTERM after
# saving a checkpoint, so the same command resumes. Any other exit code ends the loop
# and is this script's: 0 done, 3 diverged, 2 bad input, ... (videofusion_jax/cli.py).
#
#   launch/until_done.sh .venv/bin/python -m videofusion_jax.train --config=... --workdir=...
#
# MAX_RESTARTS (default 100) bounds the restarts.
set -uo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi
PREEMPTED=75
max=${MAX_RESTARTS:-100}
for ((restarts = 0; ; restarts++)); do
  "$@"
  code=$?
  if [[ $code -ne $PREEMPTED ]]; then exit "$code"; fi
  if [[ $restarts -ge $max ]]; then
    echo "until_done: preempted $((restarts + 1)) times; MAX_RESTARTS=$max reached" >&2
    exit "$code"
  fi
  echo "until_done: exit $PREEMPTED (preempted, checkpoint saved): restart $((restarts + 1))/$max" >&2
done
