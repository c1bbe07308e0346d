"""Test-wide settings: CPU only, a persistent compile cache, the repo root importable."""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(__file__), "..", ".cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# `configs/` lives at the repository root, next to the package.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
