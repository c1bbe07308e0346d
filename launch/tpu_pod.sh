#!/usr/bin/env bash
# Train on every host of a Cloud TPU VM or pod slice: the same command on all workers.
#
#   launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [more train flags...]
#   launch/tpu_pod.sh my-v5p-64 us-east5-a configs/webvid.py gs://my-bucket/runs/webvid
#
# Before training, in this order, when set:
#   MAKE_BUCKET=1        create WORKDIR's gs:// bucket in the TPU's region;
#   CREATE=ACCELERATOR   create the TPU VM (e.g. v6e-16, v5litepod-16, v5p-64) with the
#                        runtime image for that generation (RUNTIME= overrides), SPOT=1
#                        for spot capacity;
#   SETUP=1              copy this checkout (not its .venv, .cache, .git) to
#                        ~/videofusion_jax on every worker and run launch/tpu_vm_setup.sh
#                        there (a Python >= 3.11 venv with .[tpu]).
# DETACH=1 starts training in the background on every worker (output in
# ~/videofusion_jax/train.log), so closing this terminal does not stop it.
# Alone, with only TPU_NAME ZONE: LOGS=1 follows worker 0's train.log; DELETE=1 deletes
# the TPU VM. DRY_RUN=1 prints the gcloud commands instead of running them.
#
# jax.distributed finds the other hosts by itself on a TPU slice (distributed.enabled
# "auto"); the workdir must be visible to all hosts (a gs:// bucket). Each worker runs
# the command under launch/until_done.sh: a run preempted by SIGTERM (exit 75, saved)
# starts again from its checkpoint; done (0) or a failure ends it (launch/README.md).
set -euo pipefail
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
REMOTE_DIR=${REMOTE_DIR:-videofusion_jax}

if [[ "${LOGS:-0}" == 1 || "${DELETE:-0}" == 1 ]]; then
  if [[ $# -ne 2 ]]; then
    echo "usage: LOGS=1|DELETE=1 $0 TPU_NAME ZONE" >&2
    exit 2
  fi
  if [[ "${LOGS:-0}" == 1 ]]; then
    run gcloud compute tpus tpu-vm ssh "$1" --zone="$2" --worker=0 --command \
      "tail -n 100 -F ~/$REMOTE_DIR/train.log"
  else
    run gcloud compute tpus tpu-vm delete "$1" --zone="$2" --quiet
  fi
  exit 0
fi

if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [train flags...]" >&2
  exit 2
fi
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4

if [[ "${MAKE_BUCKET:-0}" == 1 ]]; then
  # In the TPU's region (its zone less the letter): reads and writes stay in the region.
  if [[ "$WORKDIR" != gs://* ]]; then
    echo "error: MAKE_BUCKET=1 needs a gs:// WORKDIR, not $WORKDIR" >&2
    exit 2
  fi
  bucket=${WORKDIR#gs://}
  run gcloud storage buckets create "gs://${bucket%%/*}" --location="${ZONE%-*}" \
    --uniform-bucket-level-access
fi

if [[ -n "${CREATE:-}" ]]; then
  # The runtime image of each generation (cloud.google.com/tpu/docs/runtimes).
  case "$CREATE" in
    v6e-*) default_runtime=v2-alpha-tpuv6e ;;
    v5litepod-*) default_runtime=v2-alpha-tpuv5-lite ;;
    v5p-*) default_runtime=v2-alpha-tpuv5 ;;
    v4-* | v3-* | v2-*) default_runtime=tpu-ubuntu2204-base ;;
    *) default_runtime="" ;;
  esac
  runtime=${RUNTIME:-$default_runtime}
  if [[ -z "$runtime" ]]; then
    echo "error: CREATE=$CREATE: unknown accelerator type; expected v6e-N, v5litepod-N," \
      "v5p-N or v4-N, or set RUNTIME= to its TPU software version" >&2
    exit 2
  fi
  spot=()
  if [[ "${SPOT:-0}" == 1 ]]; then spot=(--spot); fi
  run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
    --accelerator-type="$CREATE" --version="$runtime" ${spot[@]+"${spot[@]}"}  # bash 3.2
fi

if [[ "${SETUP:-0}" == 1 ]]; then
  # The checkout without its local venv, caches and runs (they would overwrite the
  # workers' own), as a folder named REMOTE_DIR copied into ~: a second SETUP=1
  # updates ~/REMOTE_DIR rather than nesting a copy inside it.
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir "$stage/$REMOTE_DIR"
  tar -C "$(dirname "$0")/.." --exclude=./.venv --exclude=./.cache --exclude=./.git \
    --exclude=./runs --exclude=__pycache__ -cf - . | tar -xf - -C "$stage/$REMOTE_DIR"
  run gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all \
    "$stage/$REMOTE_DIR" "$TPU_NAME:~"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command \
    "cd ~/$REMOTE_DIR && launch/tpu_vm_setup.sh"
fi

TRAIN="launch/until_done.sh .venv/bin/python -m videofusion_jax.train --config=$CONFIG --workdir=$WORKDIR $*"
if [[ "${DETACH:-0}" == 1 ]]; then
  # nohup and no terminal: the run outlives this ssh session; its output goes to a file.
  TRAIN="nohup $TRAIN > train.log 2>&1 < /dev/null &"
fi
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command \
  "cd ~/$REMOTE_DIR && $TRAIN"
