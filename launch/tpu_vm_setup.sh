#!/usr/bin/env bash
# On one TPU VM worker, in this checkout: a virtual environment with Python >= 3.11 and
# this package installed with the [tpu] extra. launch/tpu_pod.sh SETUP=1 runs it on
# every worker.
#
#   launch/tpu_vm_setup.sh          (VENV=.venv by default)
#
# The package needs Python >= 3.11 (grain has no 3.10 release), but the Ubuntu 22.04
# TPU VM images (v2-alpha-tpuv6e, v2-alpha-tpuv5-lite, v2-alpha-tpuv5,
# tpu-ubuntu2204-base) ship python3 3.10. So: python3.12, python3.11 or python3 if one
# of them is 3.11 or 3.12; otherwise uv from PyPI (pip install --user), which installs a
# managed Python 3.11 and makes the venv with it. DRY_RUN=1 prints the commands.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON_VERSION=3.11
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
say() { echo "tpu_vm_setup: $*" >&2; }

version_of() {  # "3.10" for a python on PATH, nothing if there is none
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}
supported() { [[ "$1" == 3.11 || "$1" == 3.12 ]]; }  # pyproject: >=3.11,<3.13

python=""
for candidate in python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null && supported "$(version_of "$candidate")"; then
    python=$candidate
    break
  fi
done

if [[ -n "$python" ]]; then
  say "using $(command -v "$python") (Python $(version_of "$python"))"
  run "$python" -m venv --clear "$VENV"
else
  say "no Python 3.11 or 3.12 (python3 is $(version_of python3)): installing uv and a" \
    "managed Python $PYTHON_VERSION"
  uv="$HOME/.local/bin/uv"
  run python3 -m pip install --user --quiet --upgrade uv
  run "$uv" python install "$PYTHON_VERSION"
  run "$uv" venv --clear --seed --python "$PYTHON_VERSION" "$VENV"  # --seed: with pip
fi
run "$VENV/bin/python" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), sys.version; print("tpu_vm_setup: Python", sys.version.split()[0], "in", sys.prefix)'
run "$VENV/bin/python" -m pip install --quiet --upgrade pip
run "$VENV/bin/python" -m pip install --quiet -e '.[tpu]'
# Imports only: touching the TPUs here would wait for the other workers of the slice.
run "$VENV/bin/python" -c 'import jax, videofusion_jax; print("tpu_vm_setup: installed, jax", jax.__version__)'
