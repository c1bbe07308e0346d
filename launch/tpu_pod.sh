#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM or pod slice: the same command on all workers.
#
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [more train flags...]
#   launch/tpu_pod.sh my-v5p-64 us-east5-a configs/webvid.py gs://my-bucket/runs/webvid
#
# SETUP=1 first copies this checkout to ~/videofusion_jax on every worker and installs
# it with the [tpu] extra. DRY_RUN=1 prints the gcloud commands instead of running them.
# jax.distributed finds the other hosts by itself on a TPU slice (distributed.enabled
# "auto"); the workdir must be visible to all hosts (a gs:// bucket). Each worker runs
# the command under launch/until_done.sh: a run preempted by SIGTERM (exit 75, saved)
# starts again from its checkpoint; done (0) or a failure ends it (launch/README.md).
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [train flags...]" >&2
  exit 2
fi
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
REMOTE_DIR=${REMOTE_DIR:-videofusion_jax}
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }

if [[ "${SETUP:-0}" == 1 ]]; then
  run gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all \
    "$(cd "$(dirname "$0")/.." && pwd)" "$TPU_NAME:~/$REMOTE_DIR"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command \
    "cd ~/$REMOTE_DIR && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
fi
TRAIN="cd ~/$REMOTE_DIR && launch/until_done.sh .venv/bin/python -m videofusion_jax.train --config=$CONFIG --workdir=$WORKDIR $*"
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command "$TRAIN"
