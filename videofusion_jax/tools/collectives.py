"""What a compiled sharded program sends between devices: its collectives, counted.

  compiled = jax.jit(f, in_shardings=...).lower(*args).compile()
  summary = collectives(compiled.as_text())
  summary.elements_by_kind()   # {"all-gather": 2424944, "all-reduce": 1780224, ...}

Reads the partitioned HLO text: every all-reduce / all-gather / reduce-scatter /
all-to-all / collective-permute, the number of array elements it produces on one
device (a tuple-shaped one sums its parts) and the JAX op it came from (`op_name`
metadata, e.g. "jit(train_step)/jvp()/concatenate"). Elements, not bytes: the
programs compared here share dtypes, and elements are what a layout change moves.
Exact for synchronous collectives (CPU programs, which the tests read); an async
`*-start` op on GPU/TPU may also list its operand in its tuple type.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
# `%name = TYPE KIND(` or `KIND-start(` (async pairs are counted once, at the start).
_OP = re.compile(r" = (.*?) (" + "|".join(KINDS) + r")(-start)?\(")
_ARRAY = re.compile(r"\b[a-z]+\d*\[([\d,]*)\]")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Collective:
  kind: str
  elements: int  # of its result, on one device
  op_name: str  # the JAX op it came from ("" without metadata)


@dataclasses.dataclass(frozen=True)
class Collectives:
  ops: tuple[Collective, ...]

  def elements_by_kind(self) -> dict[str, int]:
    out = collections.Counter()
    for op in self.ops:
      out[op.kind] += op.elements
    return dict(out)

  def count_by_kind(self) -> dict[str, int]:
    return dict(collections.Counter(op.kind for op in self.ops))

  @property
  def elements(self) -> int:
    return sum(op.elements for op in self.ops)

  def largest(self, kind: str) -> int:
    """Elements of the largest single `kind` collective (0 if there is none)."""
    return max((op.elements for op in self.ops if op.kind == kind), default=0)


def collectives(hlo_text: str) -> Collectives:
  """The collectives of a compiled (partitioned) program's `as_text()`."""
  ops = []
  for line in hlo_text.splitlines():
    m = _OP.search(line)
    if m is None:
      continue
    elements = sum(
      math.prod(int(d) for d in dims.split(",") if d) for dims in _ARRAY.findall(m.group(1))
    )
    name = _OP_NAME.search(line)
    ops.append(Collective(m.group(2), elements, name.group(1) if name else ""))
  return Collectives(tuple(ops))
