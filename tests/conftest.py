"""Test-wide settings: CPU only, fast compiles, a persistent compile cache. (The
repository root, where configs/, benchmarks/ and scripts/ live, is importable through
pytest's `pythonpath` setting in pyproject.toml.)"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# `make test` is dominated by XLA compiling tiny models once each (a train step of the
# tiny VideoFusion: 49 s at the default optimisation level, 33 s at level 0, on 2
# cores), not by running them. The level changes how fast the compiled code runs, not
# what the tests assert (the 8-device check's loss is the same to the last bit). Not
# also `--xla_cpu_use_fusion_emitters=false`: it changes random normals by an ulp
# between programs, which the exact noise identities notice. `make test-slow` trains
# for hundreds of steps: it sets VIDEOFUSION_FAST_COMPILE=0 and keeps XLA's defaults.
# Child processes (CLI and fake-device tests) inherit the flag.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0"
if os.environ.get("VIDEOFUSION_FAST_COMPILE", "1") == "1":
  os.environ["XLA_FLAGS"] = " ".join(
    f for f in (os.environ.get("XLA_FLAGS", ""), FAST_COMPILE_FLAGS) if f
  )
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".cache", "jax")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


# `make test` runs `-n 2 --dist loadfile`: whole files go to the two workers in
# collection order. Longest first, or the 8-fake-device run (a third of the suite's wall
# time on 2 cores) starts last and runs alone at the end.
LONGEST_FIRST = (
  "tests/parallel/test_sharding.py",
  "tests/test_faults.py",
  "tests/test_train.py",
  "tests/gcs/test_cli_on_gcs.py",
  "tests/models/test_videofusion.py",
  "tests/test_prior_training.py",
  "tests/models/test_execution_knobs.py",
  "tests/models/test_conditioning.py",
)


def pytest_collection_modifyitems(config, items):
  def rank(item):
    path = os.path.relpath(str(item.path), os.path.join(os.path.dirname(__file__), ".."))
    return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

  items.sort(key=rank)  # stable: the rest keep their order
