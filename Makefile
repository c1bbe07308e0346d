# Two commands for a fresh machine (README): `make demo` runs the main job, `make test`
# the test suite. Both create .venv with the pinned dependencies first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COLAB_VENV := .venv-colab
COLAB_STAMP := $(COLAB_VENV)/.installed
TFDS_VENV := .venv-tfds
TFDS_STAMP := $(TFDS_VENV)/.installed
# One persistent XLA compilation cache for every run: a second run skips most compiles.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS ?= 0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES ?= -1

.PHONY: demo study test test-flows test-slow test-notebooks test-tfds device-wheels venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,eval,convert]'
	touch $(STAMP)

# configs/demo.py:setting=gpu (longer training, same model) when JAX's default backend is a GPU/TPU
# (install jax's CUDA wheels first: .venv/bin/pip install -e '.[cuda]').
DEMO_CONFIG = configs/demo.py$$($(PY) -c 'import jax; print(":setting=gpu" if jax.default_backend() in ("gpu", "tpu") else "")' 2>/dev/null)

demo: $(STAMP)
	cfg=$(DEMO_CONFIG); \
	$(PY) -m videofusion_jax.train --config=$$cfg --workdir=runs/demo && \
	$(PY) -m videofusion_jax.sample --config=$$cfg --workdir=runs/demo

# The decomposition and pretraining studies (benchmarks/decomposition_study.py, docs/baselines.md)
# on the demo's recipe (setting=gpu on a GPU/TPU, as make demo): tables in runs/study/*.md.
# Hours on 2 CPU cores; resumable: run it again to go on. STUDY_ARGS=--budget_minutes=60 runs
# it in parts (exit 75 until every run is done).
STUDY_ARGS ?=
STUDY_CONFIG_ARG = $$($(PY) -c 'import jax; print("setting=gpu" if jax.default_backend() in ("gpu", "tpu") else "")' 2>/dev/null)

study: $(STAMP)
	$(PY) -m benchmarks.decomposition_study --out=runs/study --config_arg=$(STUDY_CONFIG_ARG) $(STUDY_ARGS)

# --dist loadfile: a module's fixtures (e.g. the 8-device run in tests/parallel/) run
# once, on one worker, instead of once per worker.
test: $(STAMP)
	$(PY) -m ruff check --quiet .
	$(PY) -m ruff format --check --quiet .
	$(PY) -m pytest -q -n 2 --dist loadfile -m 'not slow and not flow' tests

# The user's commands as subprocesses: the CLIs on real material and on the GCS emulator,
# fault injection (NaN, corrupt and unwritable checkpoints, SIGTERM), the 8-device child.
# Their own tier: each pays a process start and its compiles (.ci/run runs it too).
test-flows: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m 'flow and not slow' tests

# Slow tests train for hundreds of steps: XLA's default optimisation (tests/conftest.py).
test-slow: $(STAMP)
	VIDEOFUSION_FAST_COMPILE=0 $(PY) -m pytest -q -m slow tests

# The Colab notebooks executed top to bottom with tiny settings (VIDEOFUSION_TINY=1), in
# a venv of their own on Colab's Python, 3.12 (.venv may be another): the package with
# jupyter's kernel stack, which `make test` does not install. COLAB_PYTHON: the first
# python3.12 that runs (pyenv's shim may name one it does not select: then pyenv's
# versions folder has it, found without pyenv on the PATH too); pass
# COLAB_PYTHON=/path/to/python3.12 to choose.
COLAB_PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 \
  $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do \
  $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)

$(COLAB_STAMP): pyproject.toml
	@test -n "$(COLAB_PYTHON)" || { echo "make test-notebooks: no Python 3.12 (Colab's) found; install one or pass COLAB_PYTHON=/path/to/python3.12" >&2; exit 2; }
	$(COLAB_PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COLAB_VENV)/bin/python -m pip install --quiet -e '.[test,eval,convert,notebooks]'
	touch $(COLAB_STAMP)

test-notebooks: $(COLAB_STAMP)
	$(COLAB_VENV)/bin/python -m pytest -q -s colab/test_notebooks.py

# TFDS datasets with a Video feature (ucf101, moving_mnist) need TensorFlow, which `make
# test` does not install: a second venv sees .venv's packages through a .pth file and adds
# only the `[tfds]` extra (TensorFlow: ~1.8 min here from a local wheel cache).
$(TFDS_STAMP): $(STAMP)
	$(PYTHON) -m venv $(TFDS_VENV)
	$(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > \
	  "$$($(TFDS_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/videofusion_base.pth"
	$(TFDS_VENV)/bin/python -m pip install --quiet -e '.[test,tfds]'
	touch $(TFDS_STAMP)

test-tfds: $(TFDS_STAMP)
	$(TFDS_VENV)/bin/python -m pytest -q -rs tests/data/test_tfds.py

# A lent GPU's image has Python 3.12 and its own jax but not grain, ml_collections, av, ...:
# those (at this venv's versions) as cp312 wheels for scripts/device_session.py to carry.
device-wheels: $(STAMP)
	rm -rf .device_wheels
	$(PY) scripts/device_session.py --download_wheels=.device_wheels

clean:
	rm -rf $(VENV) $(TFDS_VENV) $(COLAB_VENV) .cache runs .device_wheels .device_work
