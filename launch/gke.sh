#!/usr/bin/env bash
# Render launch/gke_jobset.yaml and apply it with kubectl.
#
#   IMAGE=us-docker.pkg.dev/PROJECT/repo/videofusion:latest \
#   launch/gke.sh JOB_NAME CONFIG WORKDIR TPU_TYPE TPU_TOPOLOGY NUM_HOSTS [CHIPS_PER_HOST]
#   e.g. launch/gke.sh vf-webvid configs/webvid.py gs://bucket/runs/webvid \
#          tpu-v5p-slice 4x4x4 16 4
#
# DRY_RUN=1 prints the rendered manifest instead of applying it. The image must hold
# this repository installed with the [tpu] extra.
set -euo pipefail
if [[ $# -lt 6 ]]; then
  echo "usage: IMAGE=... $0 JOB_NAME CONFIG WORKDIR TPU_TYPE TPU_TOPOLOGY NUM_HOSTS [CHIPS]" >&2
  exit 2
fi
: "${IMAGE:?set IMAGE to a container image with videofusion_jax installed}"
export IMAGE JOB_NAME=$1 CONFIG=$2 WORKDIR=$3 TPU_TYPE=$4 TPU_TOPOLOGY=$5 NUM_HOSTS=$6
export CHIPS_PER_HOST=${7:-4}
TEMPLATE="$(dirname "$0")/gke_jobset.yaml"
render() {  # ${NAME} -> value of NAME, only for the fields above
  python3 - "$TEMPLATE" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
print(re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], text), end="")
PY
}
if [[ "${DRY_RUN:-0}" == 1 ]]; then render; exit 0; fi
render | kubectl apply -f -
