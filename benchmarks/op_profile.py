"""Where a compiled step's device time goes: its XLA ops, timed by the profiler, grouped
by the layer that issued them and by what they compute.

  profile = op_profile.profile_compiled(compiled, args, calls=3)
  print("\n".join(op_profile.format_profile("step", profile, step_s)))
  # a step that donates its inputs: a call that feeds it its own outputs
  profile = op_profile.profile_calls(compiled.as_text(), run_one_step, calls=3)

Each executed op (a CPU thunk, a GPU kernel, a TPU op) carries the name of its HLO
instruction. The compiled module's text gives that instruction's kind (a convolution,
a matmul, a fusion and what it fuses) and its jax `op_name`, whose path holds the
`jax.named_scope`s it was traced under: the U-Nets name their layers
(`models/layers.py`: "resnet_block", "spatial_attention", "temporal_layer") and
VideoFusion its two generators ("base_unet", "residual_unet"). So a row reads "the
residual U-Net's ResNet blocks: 4.1 ms of convolutions, 2.0 ms of reductions
(GroupNorm), ...". This answers what dominates a step (issue 9) on any backend, without
TensorBoard: `jax.profiler.ProfileData` reads the trace.

Numbers are per call, summed over ops. On a CPU, independent thunks may run at the same
time on different threads, so the sum can exceed the wall time; compare it with the
step's untraced time (`coverage` in table4.py). Fusions are classified by the heaviest
thing they contain (a convolution over a matmul over a reduction), and attributed to
the layer of that instruction: a fusion that XLA built across two layers counts for one.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import jax

# Named scopes the models open; a row of the profile is the ones an op's op_name
# contains, outermost first, joined by "/", and "other" where it names no layer (a
# U-Net's stem and output conv, embeddings, resamplers, and what runs around the U-Nets).
LAYERS = ("resnet_block", "spatial_attention", "temporal_layer")
SCOPES = ("base_unet", "residual_unet", *LAYERS)
KINDS = (
  "conv",
  "matmul",
  "fused_attention",
  "reduce",
  "elementwise",
  "layout",
  "collective",
  "other",
)
OTHER = "other"

# Opcodes that only move or re-describe data.
_DATA_MOVEMENT = {
  "parameter",
  "constant",
  "bitcast",
  "reshape",
  "broadcast",
  "transpose",
  "copy",
  "slice",
  "dynamic-slice",
  "dynamic-update-slice",
  "concatenate",
  "pad",
  "tuple",
  "get-tuple-element",
  "iota",
  "copy-start",
  "copy-done",
  "bitcast-convert",
  "reverse",
  "gather",
}
_COLLECTIVES = re.compile(
  r"^(all-reduce|all-gather|reduce-scatter|all-to-all|"
  r"collective-permute|collective-broadcast)"
)
_INSTRUCTION = re.compile(
  r"^\s*(?:ROOT\s+)?%?(?P<name>[\w.\-]+)\s*=\s*.*?\s"
  r"(?P<opcode>[a-z][a-z0-9\-]*)\((?P<rest>.*)$"
)
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?(?P<name>[\w.\-]+)\s+\(.*\{\s*$")
_CALLS = re.compile(r"calls=\{?%?([\w.\-]+)")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_OPERAND = re.compile(r"%([\w.\-]+)")


@dataclasses.dataclass(frozen=True)
class HloOp:
  """One instruction of the compiled module: what it computes and who issued it."""

  kind: str
  op_name: str  # the jax op_name of its anchor instruction; "" when it has none


@dataclasses.dataclass(frozen=True)
class _Instruction:
  name: str
  opcode: str
  rest: str  # operands and attributes

  @property
  def op_name(self) -> str:
    m = _OP_NAME.search(self.rest)
    return m.group(1) if m else ""

  @property
  def target(self) -> str:
    m = _TARGET.search(self.rest)
    return m.group(1).lower() if m else ""


def parse_hlo(text: str) -> dict[str, HloOp]:
  """{instruction name: HloOp} for every instruction of an HLO module's text
  (`compiled.as_text()`)."""
  computations: dict[str, list[_Instruction]] = {}
  current = None
  for line in text.splitlines():
    if (m := _COMPUTATION.match(line)) and " = " not in line.split("(", 1)[0]:
      current = computations.setdefault(m["name"], [])
    elif current is not None and (m := _INSTRUCTION.match(line)):
      current.append(_Instruction(m["name"], m["opcode"], m["rest"]))
  ops, operands = {}, {}
  for instructions in computations.values():
    for inst in instructions:
      inner = _fused(inst, computations)
      kind = _kind(inner)
      anchor = next((i for i in inner if _kind([i]) == kind and i.op_name), None)
      named = [i.op_name for i in inner if i.op_name]
      op_name = (
        anchor.op_name
        if anchor
        else inst.op_name or (collections.Counter(named).most_common(1)[0][0] if named else "")
      )
      ops[inst.name] = HloOp(kind, op_name)
      operands[inst.name] = _OPERAND.findall(inst.rest.split("),", 1)[0])
  # Instructions XLA made itself (a 1x1 convolution turned into a dot, a layout copy)
  # have no op_name: they take their nearest named operand's, the layer they serve.
  for name, op in ops.items():
    if not op.op_name:
      ops[name] = HloOp(op.kind, _inherited_op_name(name, ops, operands))
  return ops


def _inherited_op_name(name: str, ops: dict, operands: dict, depth: int = 4) -> str:
  for operand in operands.get(name, []):
    if operand in ops and ops[operand].op_name:
      return ops[operand].op_name
  if depth:
    for operand in operands.get(name, []):
      if found := _inherited_op_name(operand, ops, operands, depth - 1):
        return found
  return ""


def _fused(inst: _Instruction, computations: dict, depth: int = 0) -> list[_Instruction]:
  """The instruction itself, or for a fusion (or call) everything it calls."""
  m = _CALLS.search(inst.rest)
  if m is None or depth > 8 or m.group(1) not in computations:
    return [inst]
  return [leaf for i in computations[m.group(1)] for leaf in _fused(i, computations, depth + 1)]


def _kind(instructions: Sequence[_Instruction]) -> str:
  """The heaviest thing a group of instructions does (one of KINDS)."""
  opcodes = {i.opcode for i in instructions}
  targets = " ".join(i.target for i in instructions)
  if re.search(r"fmha|flash|attention", targets):
    return "fused_attention"
  if "convolution" in opcodes or "conv" in targets:
    return "conv"
  if "dot" in opcodes or re.search(r"gemm|matmul|cublas", targets):
    return "matmul"
  if any(_COLLECTIVES.match(o) for o in opcodes):
    return "collective"
  if opcodes & {"reduce", "reduce-window", "scatter", "select-and-scatter", "sort"}:
    return "reduce"
  if "custom-call" in opcodes:
    return "other"
  if opcodes <= _DATA_MOVEMENT:
    return "layout"
  return "elementwise"


def scope_group(op_name: str, scopes: Sequence[str] = SCOPES) -> str:
  """The named scopes of `scopes` that `op_name`'s path contains, outermost first,
  ending in "other" when none of them is one of LAYERS."""
  found = []
  for scope in scopes:
    m = re.search(rf"(?<![\w]){re.escape(scope)}(?![\w])", op_name)
    if m:
      found.append((m.start(), scope))
  names = [s for _, s in sorted(found)]
  return "/".join(names if set(names) & set(LAYERS) else [*names, OTHER])


def _stats(event) -> dict:
  return {k: v for k, v in event.stats}


def device_op_seconds(planes: Iterable, module: str, on_device: bool) -> dict[str, float]:
  """{HLO instruction name: seconds summed over the trace} of `module`'s ops.

  `on_device`: read the device planes (GPU/TPU; on a host the thunks' events would be
  launches, not the work); else the host CPU plane, where the CPU client runs its
  thunks. A plane with an "XLA Ops" line (TPU) is read from that line alone; otherwise
  every event with an `hlo_op` stat counts (GPU kernels, one op may be several kernels;
  CPU thunks).
  """
  prefix = "/device:" if on_device else "/host:CPU"
  chosen = [p for p in planes if p.name.startswith(prefix)]
  seconds: dict[str, float] = collections.defaultdict(float)
  for plane in chosen:
    lines = list(plane.lines)
    ops_lines = [line for line in lines if line.name == "XLA Ops"]
    for line in ops_lines or lines:
      for event in line.events:
        stats = _stats(event)
        name = stats.get("hlo_op") or (event.name if ops_lines else None)
        if not name or stats.get("hlo_module", module) != module:
          continue
        seconds[str(name)] += event.duration_ns * 1e-9
  return dict(seconds)


def _module_name(hlo_text: str) -> str:
  m = re.match(r"HloModule\s+([\w.\-]+)", hlo_text)
  return m.group(1) if m else ""


def profile_compiled(
  compiled, args: Sequence, *, calls: int = 3, scopes: Sequence[str] = SCOPES
) -> dict:
  """`profile_calls` of `compiled(*args)` (which must not donate `args`)."""
  return profile_calls(
    compiled.as_text(), lambda: jax.block_until_ready(compiled(*args)), calls=calls, scopes=scopes
  )


def profile_calls(
  hlo_text: str, call: Callable[[], object], *, calls: int = 3, scopes: Sequence[str] = SCOPES
) -> dict:
  """Run `call()` (one execution of the module `hlo_text`, finished when it returns)
  `calls` times under the profiler, after one untraced call; return the module's op
  time per call by layer group and kind.

  {"calls", "traced_wall_s" (per call, profiler overhead included), "op_s" (per call),
   "unmatched_s" (ops the module text does not name), "layer_names" (whether any op
   names one of `scopes`), "cells": [{"group", "kind", "seconds"}], largest first}, or
  {"error": why} when the trace holds none of the module's ops. A profile is a
  diagnostic beside a benchmark's numbers: a profiler that fails (no CUPTI in a
  container, say) must not cost the run those numbers, so its errors come back too.
  """
  if calls < 1:
    raise ValueError(f"calls={calls}; expected >= 1")
  ops, module = parse_hlo(hlo_text), _module_name(hlo_text)
  on_device = jax.default_backend() != "cpu"
  call()
  try:
    with tempfile.TemporaryDirectory() as trace_dir:
      start = time.perf_counter()
      with jax.profiler.trace(trace_dir):
        for _ in range(calls):
          call()
      wall = (time.perf_counter() - start) / calls
      traces = sorted(Path(trace_dir).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
      if not traces:
        return {"error": "jax.profiler.trace wrote no .xplane.pb"}
      planes = list(jax.profiler.ProfileData.from_file(str(traces[-1])).planes)
      seconds = device_op_seconds(planes, module, on_device)
  except Exception as e:  # noqa: BLE001 -- see the docstring
    return {"error": f"the profiler failed: {type(e).__name__}: {e}"}
  if not seconds:
    where = "device planes" if on_device else "host CPU plane"
    return {
      "error": f"the trace has no op of {module} on its {where} (planes: "
      f"{[p.name for p in planes]}); on a GPU the profiler needs CUPTI"
    }
  cells: dict[tuple[str, str], float] = collections.defaultdict(float)
  unmatched = 0.0
  for name, s in seconds.items():
    op = ops.get(name)
    if op is None:
      unmatched += s / calls
    group = scope_group(op.op_name, scopes) if op else OTHER
    cells[(group, op.kind if op else "other")] += s / calls
  rows = [
    {"group": g, "kind": k, "seconds": s}
    for (g, k), s in sorted(cells.items(), key=lambda kv: -kv[1])
  ]
  layer_names = any(scope_group(op.op_name, scopes) != OTHER for op in ops.values())
  return {
    "calls": calls,
    "traced_wall_s": wall,
    "op_s": sum(cells.values()),
    "unmatched_s": unmatched,
    "layer_names": layer_names,
    "cells": rows,
  }


def totals(profile: dict, by: str) -> dict[str, float]:
  """Seconds per call summed by "group" or by "kind", largest first."""
  out: dict[str, float] = collections.defaultdict(float)
  for cell in profile["cells"]:
    out[cell[by]] += cell["seconds"]
  return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def format_profile(title: str, profile: dict, step_s: float | None = None) -> list[str]:
  """A matrix of milliseconds per call: layer groups down, op kinds across."""
  if "error" in profile:
    return [f"{title}: no profile: {profile['error']}"]
  groups, kinds = totals(profile, "group"), totals(profile, "kind")
  ms = {(c["group"], c["kind"]): c["seconds"] * 1e3 for c in profile["cells"]}
  op_ms = profile["op_s"] * 1e3
  coverage = f", {profile['op_s'] / step_s:.0%} of the untraced step" if step_s else ""
  lines = [
    f"{title}: {op_ms:.2f} ms of ops per call{coverage}, by layer (rows) and op kind (columns), ms"
  ]
  if not profile.get("layer_names", True):
    # JAX's persistent cache key ignores op names: an executable compiled from code
    # without the layers' named scopes is reused, and its ops name no layer.
    lines.append(
      "  (no op names a layer: the executable was probably loaded from a "
      "JAX_COMPILATION_CACHE_DIR filled before the layers had named scopes; "
      "rerun with an empty cache directory)"
    )
  width = max([len(g) for g in groups] + [len("total")])
  lines.append(
    f"{'':<{width}} " + " ".join(f"{k:>11}" for k in kinds) + f" {'total':>9} {'share':>6}"
  )
  for group, total in groups.items():
    cols = " ".join(f"{ms.get((group, k), 0.0):11.2f}" for k in kinds)
    lines.append(f"{group:<{width}} {cols} {total * 1e3:9.2f} {total * 1e3 / op_ms:6.0%}")
  cols = " ".join(f"{s * 1e3:11.2f}" for s in kinds.values())
  lines.append(f"{'total':<{width}} {cols} {op_ms:9.2f} {1:6.0%}")
  return lines
