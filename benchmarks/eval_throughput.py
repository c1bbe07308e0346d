"""How fast are FVD/KVD features? (A benchmark, not a test.)

  python -m benchmarks.eval_throughput [--batch_sizes=1,4] [--rounds=2]

I3D feature extraction (uint8 16x128x128 clips -> resize to 224 -> logits) at two batch
sizes, timed interleaved in one process after a warm-up call per batch size (compile
time reported apart), then the Fréchet distance and KVD of 2048 x 400 float64 features.
Prints videos/s per batch size, their ratio, and the projected time to score 2048
generated videos (real features come from the cache after the first run).
"""

from __future__ import annotations

import platform
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import provenance
from videofusion_jax.metrics import fvd

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "4"], "Two batch sizes to compare.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed calls per batch size.")
_SIZE = flags.DEFINE_integer("image_size", 128, "Input clip size before the 224 resize.")


def main(argv):
  del argv
  print(f"{provenance.hardware_line()}, python {platform.python_version()}")
  sizes = [int(b) for b in _BATCH_SIZES.value]
  rng = np.random.default_rng(0)
  extractors, inputs = {}, {}
  for b in sizes:
    extractors[b] = fvd.i3d_extractor(batch_size=b)
    inputs[b] = rng.integers(0, 256, (b, 16, _SIZE.value, _SIZE.value, 3), np.uint8)
    t = time.perf_counter()
    jax.block_until_ready(extractors[b].apply(inputs[b]))
    print(f"batch {b}: first call (compile + run) {time.perf_counter() - t:.1f} s")
  spent = {b: 0.0 for b in sizes}
  for _ in range(_ROUNDS.value):
    for b in sizes:
      t = time.perf_counter()
      jax.block_until_ready(extractors[b].apply(inputs[b]))
      spent[b] += time.perf_counter() - t
  rate = {b: _ROUNDS.value * b / spent[b] for b in sizes}
  for b in sizes:
    print(f"batch {b}: {rate[b]:.2f} videos/s ({1 / rate[b]:.2f} s/video)")
  print(f"ratio batch {sizes[1]} / batch {sizes[0]}: {rate[sizes[1]] / rate[sizes[0]]:.2f}x")
  feats = rng.normal(size=(2, 2048, 400))
  t = time.perf_counter()
  fvd.frechet_distance(feats[0], feats[1])
  t_fd = time.perf_counter() - t
  t = time.perf_counter()
  fvd.polynomial_mmd(feats[0], feats[1])
  t_kvd = time.perf_counter() - t
  print(f"2048 x 400 features: Fréchet distance {t_fd:.2f} s, KVD {t_kvd:.2f} s")
  best = max(rate.values())
  print(
    f"projected: 2048 generated videos scored in {2048 / best + t_fd + t_kvd:.0f} s "
    f"(features at {best:.2f} videos/s, cached real features)"
  )


if __name__ == "__main__":
  app.run(main)
