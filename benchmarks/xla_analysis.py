"""What XLA says of a compiled program without running it, its FLOPs and its memory,
and what the device says of the memory it used.

XLA's numbers are the compiler's own accounting, the same on every backend that reports
them: FLOPs from `cost_analysis()` (custom calls such as cuDNN kernels are not costed),
bytes from `memory_analysis()` (arguments + outputs + temporaries - what outputs alias).
"""

from __future__ import annotations

import jax


def flops(compiled) -> float:
  """FLOPs of one execution (0.0 where the backend does not say)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older jax: one per device
  return float((cost or {}).get("flops", 0.0))


def memory_bytes(compiled) -> dict:
  """{"xla_total", "xla_temp", "xla_arguments", "xla_outputs"} in bytes."""
  m = compiled.memory_analysis()
  get = lambda name: int(getattr(m, name, 0) or 0)
  total = (
    get("argument_size_in_bytes")
    + get("output_size_in_bytes")
    + get("temp_size_in_bytes")
    - get("alias_size_in_bytes")
  )
  return {
    "xla_total": total,
    "xla_temp": get("temp_size_in_bytes"),
    "xla_arguments": get("argument_size_in_bytes"),
    "xla_outputs": get("output_size_in_bytes"),
  }


def device_peak_bytes() -> int | None:
  """Peak bytes in use on the first device so far (None where it keeps no statistics,
  e.g. a CPU)."""
  stats = jax.devices()[0].memory_stats()
  return None if not stats else int(stats.get("peak_bytes_in_use", 0))
