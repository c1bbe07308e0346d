"""Table 4 on this machine: VideoFusion vs VDM* per denoising step, and the DDIM sampler.

  python -m benchmarks.table4                     # CPU default: --preset=tiny
  python -m benchmarks.table4 --preset=table8 --batch=4 --dtype=bfloat16   # a GPU/TPU
  python -m benchmarks.table4 --preset=table9 --json=table4.json

The paper (Table 4) re-implemented VDM on VideoFusion's base generator (VDM*) and
reports, per denoising step, VideoFusion at 0.78x VDM*'s memory and 0.43x its latency.
Here the models are built from one preset (VDM* = the preset's base U-Net with
temporal attention after each spatial attention, on all N frames; `models/vdm.py`)
and measured in one process. VideoFusion twice: as our configs train it (temporal
attention after every layer of the residual U-Net, docs/math.md) and with the paper's
per-frame 2D residual generator ("videofusion_2d"), the architecture Table 4 measured;
each gets its ratios to VDM*. Each step function is compiled once (compile time
reported apart), warmed up, then timed call by call (`block_until_ready`), the
variants interleaved, the median of `--steps` calls reported. The parameters go in as a
list of arrays, as the training loop passes them: nnx.State is flattened in Python at
every call, which would add host time in proportion to the number of arrays, and
VideoFusion has 1.8x VDM*'s (two U-Nets). Memory: XLA's memory
analysis of the compiled step (arguments + outputs + temporaries, the same number on
every backend), and where the device reports `memory_stats()` (GPU/TPU) also the peak
of a fresh process per variant. FLOPs: XLA's cost analysis. The whole `--sampler_steps`
DDIM sampler (one `lax.scan`, `generate.make_sample_fn`) is timed too: host overhead =
sampler wall time - steps x step time, as a fraction of the sampler time, and the
number of compilations it triggered over repeated calls (expected: 1). What dominates
each step (`--parts`, on by default): VideoFusion's base and residual U-Nets and VDM*'s
U-Net without its temporal layers, each compiled and timed alone in the same
interleaved loop, with their share of the step and achieved FLOP/s (a piece far below
the others' FLOP/s is bound by launches or memory, not by its arithmetic). Where
the time goes inside each step (`--profile`, on by default): a profiler trace of a few
calls, its ops grouped by the layer that issued them (each generator's ResNet blocks,
spatial attention, temporal layers) and by what they compute (convolutions, matmuls,
reductions such as GroupNorm and softmax, elementwise, layout copies;
`op_profile.py`).

The last line, `TABLE4_JSON {...}`, is the machine-readable result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Each variant's peak memory is read in a child process (`_isolated_peak`): on a GPU this
# process must not take 75% of the memory up front (JAX's default) or the children start
# with a quarter of it. Read when the backend starts, so before the first jax call.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import op_profile, provenance, xla_analysis  # noqa: E402
from videofusion_jax import diffusion  # noqa: E402
from videofusion_jax.models import presets  # noqa: E402
from videofusion_jax.models.layers import cast_floats  # noqa: E402
from videofusion_jax.models.unet import UNet  # noqa: E402
from videofusion_jax.models.vdm import VDM, VDMConfig  # noqa: E402
from videofusion_jax.models.videofusion import VideoFusion, VideoFusionConfig  # noqa: E402
from videofusion_jax.sampling import generate

PAPER = {"latency_ratio": 0.17 / 0.40, "memory_ratio": 49.85 / 63.82}  # 0.425, 0.781
# Per preset: (frames, image size, batch) of the measured step; the paper's models run at
# 16 x 64 x 64 and are super-resolved afterwards. "tiny" is Table 8 at a quarter of the
# widths (same stages, depth and base/residual proportion) for a CPU; "micro" is the
# two-stage test model (base and residual the same size, unlike the paper).
SHAPES = {"tiny": (16, 32, 1), "table8": (16, 64, 4), "table9": (16, 64, 4), "micro": (4, 16, 1)}
# videofusion: the preset as our configs train it, temporal attention in the residual
# U-Net (docs/math.md); videofusion_2d: the paper's per-frame 2D residual generator
# (`residual.temporal = "none"`), the architecture its Table 4 measured.
VARIANTS = ("videofusion", "videofusion_2d", "vdm")
COMPILE_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # one per lowering


@dataclasses.dataclass(frozen=True)
class Setup:
  preset: str
  batch: int
  frames: int
  image_size: int
  dtype: str = "float32"
  vdm_temporal: str = "attention"
  attention: str = "xla"  # model.attention of both models

  def shape(self) -> tuple[int, ...]:
    return (self.batch, self.frames, self.image_size, self.image_size, 3)


def quarter_table8() -> VideoFusionConfig:
  """Table 8 with every width / 4 (base 48, residual 32), heads of 16 channels."""
  paper = presets.table8()
  quarter = lambda u: dataclasses.replace(
    u,
    block_out_channels=tuple(c // 4 for c in u.block_out_channels),
    attention_head_dim=16,
    norm_num_groups=16,
  )
  return dataclasses.replace(paper, base=quarter(paper.base), residual=quarter(paper.residual))


def model_configs(setup: Setup) -> dict:
  """{variant: VideoFusionConfig or VDMConfig} (see VARIANTS) of one preset and dtype."""
  vf = {"tiny": quarter_table8, "micro": presets.tiny}.get(
    setup.preset, lambda: presets.get_preset(setup.preset)
  )()
  vf = dataclasses.replace(
    vf, dtype=setup.dtype, param_dtype=setup.dtype, attention=setup.attention
  )
  vdm = VDMConfig(
    unet=dataclasses.replace(vf.base, temporal="attention"),
    channels=vf.channels,
    lam=vf.lam,
    temporal_placement=setup.vdm_temporal,
    dtype=setup.dtype,
    param_dtype=setup.dtype,
    attention=setup.attention,
  )
  vf_2d = dataclasses.replace(vf, residual=dataclasses.replace(vf.residual, temporal="none"))
  return {"videofusion": vf, "videofusion_2d": vf_2d, "vdm": vdm}


def _build(config):
  cls = VideoFusion if isinstance(config, VideoFusionConfig) else VDM
  model = cls(config, rngs=nnx.Rngs(0))
  return nnx.split(model)


def _param_count(state) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(state)))


def _timed(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def step_variant(config, setup: Setup) -> dict:
  """Compile one denoising step of a model; return what is needed to time it."""
  graphdef, state = _build(config)
  schedule = diffusion.make_schedule("cosine", 1000)
  config.check_video(setup.shape())

  leaves, treedef = jax.tree.flatten(state)

  @jax.jit
  def step(leaves, z, t):
    model = nnx.merge(graphdef, treedef.unflatten(leaves)).in_compute_dtype()
    return model(z, t, schedule.alphas_cumprod).eps

  z = jax.random.normal(jax.random.key(0), setup.shape())
  t = jnp.full((setup.batch,), 500, jnp.int32)
  start = time.perf_counter()
  compiled = step.lower(leaves, z, t).compile()
  compile_s = time.perf_counter() - start
  return dict(
    graphdef=graphdef,
    state=state,
    fn=compiled,
    args=(leaves, z, t),
    compile_s=compile_s,
    flops=xla_analysis.flops(compiled),
    params=_param_count(state),
    **xla_analysis.memory_bytes(compiled),
  )


def part_variants(configs: dict, setup: Setup) -> dict:
  """The steps' pieces, compiled alone, to show what dominates each step.

  vf_base: VideoFusion's base U-Net on the B centre frames; vf_residual: its residual
  U-Net on the B(N-1) other frames (context channels, frame index, temporal layers);
  vdm_spatial: VDM*'s U-Net with its temporal layers removed, on all BN frames (VDM*'s
  step minus this is what its temporal attention and the glue cost). Weights are
  random: the time does not depend on them.
  """
  b, n, h, w, c = setup.shape()
  vf, vdm = configs["videofusion"], configs["vdm"]
  pieces = {
    "vf_base": (vf.base_unet(), b, None),
    "vf_residual": (vf.residual_unet(), b * (n - 1), n - 1),
    "vdm_spatial": (dataclasses.replace(vdm.video_unet(), temporal="none"), b * n, None),
  }
  parts = {}
  for name, (unet_config, frames, clip_frames) in pieces.items():
    graphdef, state = nnx.split(UNet(unet_config, attention=setup.attention, rngs=nnx.Rngs(0)))
    leaves, treedef = jax.tree.flatten(cast_floats(state, setup.dtype))

    @jax.jit
    def unet_call(
      leaves, x, t, frame_index, graphdef=graphdef, treedef=treedef, clip_frames=clip_frames
    ):
      extra = {} if clip_frames is None else dict(frame_index=frame_index, num_frames=clip_frames)
      return nnx.merge(graphdef, treedef.unflatten(leaves))(x, t, **extra)

    x = jax.random.normal(jax.random.key(0), (frames, h, w, unet_config.in_channels))
    t = jnp.full((frames,), 500, jnp.int32)
    frame_index = (
      jnp.tile(jnp.asarray(diffusion.other_frame_indices(n), jnp.int32), b)
      if clip_frames
      else jnp.zeros((frames,), jnp.int32)
    )
    start = time.perf_counter()
    compiled = unet_call.lower(leaves, x, t, frame_index).compile()
    parts[name] = dict(
      fn=compiled,
      args=(leaves, x, t, frame_index),
      compile_s=time.perf_counter() - start,
      flops=xla_analysis.flops(compiled),
    )
  return parts


def sampler_variant(v: dict, config, setup: Setup, num_steps: int, calls: int) -> dict:
  """Time the whole DDIM sampler; count the compilations its calls trigger."""
  mode = "standard" if isinstance(config, VDMConfig) else "decomposed"
  sc = generate.SamplerConfig(num_steps=num_steps, noise_mode=mode)
  schedule = diffusion.make_schedule("cosine", 1000)
  keys = [jax.random.split(jax.random.key(s), setup.batch) for s in (1, 2)]
  events: list[str] = []
  listener = lambda name, *a, **k: events.append(name)
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    fn = generate.make_sample_fn(v["graphdef"], setup.shape(), config.lam, sc)
    first = _timed(fn, v["state"], schedule, *keys)
    walls = [_timed(fn, v["state"], schedule, *keys) for _ in range(calls)]
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return {
    "sampler_first_call_s": first,
    "sampler_s": float(np.median(walls)),
    "sampler_compiles": events.count(COMPILE_EVENT),
    "sampler_jit_cache": fn._cache_size(),
  }


def _isolated_peak(variant: str, setup: Setup) -> int | None:
  """Peak device bytes of one variant's step, measured in a fresh process."""
  cmd = [
    sys.executable,
    "-m",
    "benchmarks.table4",
    f"--preset={setup.preset}",
    f"--batch={setup.batch}",
    f"--frames={setup.frames}",
    f"--image_size={setup.image_size}",
    f"--dtype={setup.dtype}",
    f"--vdm_temporal={setup.vdm_temporal}",
    f"--attention={setup.attention}",
    f"--only={variant}",
  ]
  # From the repository root, where `-m benchmarks.table4` resolves.
  out = subprocess.run(
    cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True
  ).stdout
  for line in out.splitlines():
    if line.startswith("PEAK_JSON "):
      return json.loads(line[len("PEAK_JSON ") :])["peak_bytes"]
  return None


def run(
  setup: Setup,
  *,
  steps: int = 20,
  sampler_steps: int = 50,
  sampler_calls: int = 3,
  isolate_memory: bool = False,
  parts: bool = True,
  profile: bool = True,
) -> dict:
  """Measure every variant side by side; return the result dict (see `format_table`)."""
  if steps < 1 or sampler_steps < 0 or sampler_calls < 1:
    raise ValueError(
      f"steps={steps}, sampler_steps={sampler_steps}, sampler_calls="
      f"{sampler_calls}; expected >= 1, >= 0, >= 1"
    )
  configs = model_configs(setup)
  variants = {name: step_variant(cfg, setup) for name, cfg in configs.items()}
  part_fns = part_variants(configs, setup) if parts else {}
  timed = {**variants, **part_fns}
  for v in timed.values():
    for _ in range(3):  # warm-up
      _timed(v["fn"], *v["args"])
  times = {name: [] for name in timed}
  for _ in range(steps):  # interleaved: all see the same machine state
    for name, v in timed.items():
      times[name].append(_timed(v["fn"], *v["args"]))
  part_rows = {
    name: {
      "step_s": float(np.median(times[name])),
      "flops": v["flops"],
      "compile_s": v["compile_s"],
    }
    for name, v in part_fns.items()
  }
  rows = {}
  for name, v in variants.items():
    row = {
      k: v[k] for k in ("compile_s", "flops", "params", "xla_total", "xla_temp", "xla_arguments")
    }
    row["step_s"] = float(np.median(times[name]))
    row["step_s_iqr"] = [float(np.percentile(times[name], q)) for q in (25, 75)]
    if sampler_steps:
      row.update(sampler_variant(v, configs[name], setup, sampler_steps, sampler_calls))
      overhead = row["sampler_s"] - sampler_steps * row["step_s"]
      row["host_overhead_s"] = overhead
      row["host_overhead_frac"] = overhead / row["sampler_s"]
    row["peak_bytes"] = _isolated_peak(name, setup) if isolate_memory else None
    rows[name] = row
  profiles = (
    {name: op_profile.profile_compiled(v["fn"], v["args"]) for name, v in variants.items()}
    if profile
    else {}
  )
  return {
    "setup": dataclasses.asdict(setup),
    "shape": list(setup.shape()),
    "rows": rows,
    "parts": part_rows,
    "profiles": profiles,
    "ratios": _ratios(rows, "videofusion"),
    "ratios_2d": _ratios(rows, "videofusion_2d"),
    "paper": PAPER,
    "steps": steps,
    "sampler_steps": sampler_steps,
    **provenance.environment(),
  }


def _ratios(rows: dict, variant: str) -> dict:
  """One VideoFusion variant over VDM*: latency, memory, FLOPs (and inside the sampler)."""
  vf, vdm = rows[variant], rows["vdm"]
  peaks = all(row["peak_bytes"] for row in rows.values())
  mem_key = "peak_bytes" if peaks else "xla_total"
  ratios = {
    "latency_ratio": vf["step_s"] / vdm["step_s"],
    "memory_ratio": vf[mem_key] / vdm[mem_key],
    "memory_source": mem_key,
    "flops_ratio": vf["flops"] / vdm["flops"] if vdm["flops"] else float("nan"),
  }
  if "sampler_s" in vf:
    # Per step inside the sampler's one scan: no dispatch or sync per step, which a lone
    # step call pays (on an H200 ~8 ms of VideoFusion's 34 at commit 863c5ad, when the
    # step still took nnx.State; so host overhead went negative).
    ratios["sampler_latency_ratio"] = vf["sampler_s"] / vdm["sampler_s"]
  return ratios


def format_table(result: dict) -> str:
  rows = result["rows"]
  lines = [
    f"{provenance.describe(result)}; preset "
    f"{result['setup']['preset']}, step input {tuple(result['shape'])}, "
    f"{result['setup']['dtype']}, {result['setup']['attention']} attention, median of "
    f"{result['steps']} calls",
    f"{'model':<14} {'params M':>9} {'step ms':>9} {'GFLOP':>9} {'XLA mem MiB':>12} "
    f"{'peak MiB':>9} {'compile s':>9} {'sampler s':>9} {'host ovh':>8} {'compiles':>8}",
  ]
  for name, row in rows.items():
    peak = f"{row['peak_bytes'] / 2**20:9.1f}" if row["peak_bytes"] else f"{'n/a':>9}"
    sampler = (
      f"{row['sampler_s']:9.2f} {row['host_overhead_frac']:8.1%} {row['sampler_compiles']:8d}"
      if "sampler_s" in row
      else f"{'-':>9} {'-':>8} {'-':>8}"
    )
    lines.append(
      f"{name:<14} {row['params'] / 1e6:9.2f} {row['step_s'] * 1e3:9.2f} "
      f"{row['flops'] / 1e9:9.2f} {row['xla_total'] / 2**20:12.1f} {peak} "
      f"{row['compile_s']:9.1f} {sampler}"
    )
  p = result["paper"]
  for label, r in (
    ("VideoFusion (ours)", result["ratios"]),
    ("VideoFusion (paper's 2D residual)", result["ratios_2d"]),
  ):
    inside = (
      f"; per step inside the {result['sampler_steps']}-step sampler "
      f"{r['sampler_latency_ratio']:.2f}x"
      if "sampler_latency_ratio" in r
      else ""
    )
    lines.append(
      f"{label} / VDM*: latency {r['latency_ratio']:.2f}x (paper "
      f"{p['latency_ratio']:.2f}x){inside}, memory {r['memory_ratio']:.2f}x from "
      f"{r['memory_source']} (paper {p['memory_ratio']:.2f}x), FLOPs "
      f"{r['flops_ratio']:.2f}x"
    )
  lines += format_parts(result)
  for name, profile in (result.get("profiles") or {}).items():
    lines += op_profile.format_profile(f"{name} step", profile, rows[name]["step_s"])
  return "\n".join(lines)


def format_parts(result: dict) -> list[str]:
  """What each step is made of: its pieces' time, share of the step and FLOP/s."""
  parts, rows = result.get("parts") or {}, result["rows"]
  if not parts:
    return []
  of = {"vf_base": "videofusion", "vf_residual": "videofusion", "vdm_spatial": "vdm"}
  lines = [f"{'piece (alone)':<24} {'ms':>8} {'of step':>8} {'GFLOP':>9} {'TFLOP/s':>8}"]
  for name, part in parts.items():
    step = rows[of[name]]["step_s"]
    lines.append(
      f"{name:<24} {part['step_s'] * 1e3:8.2f} {part['step_s'] / step:8.0%} "
      f"{part['flops'] / 1e9:9.2f} {part['flops'] / part['step_s'] / 1e12:8.2f}"
    )
  for name in ("videofusion", "vdm"):
    row = rows[name]
    lines.append(
      f"{name + ' step':<24} {row['step_s'] * 1e3:8.2f} {1:8.0%} "
      f"{row['flops'] / 1e9:9.2f} {row['flops'] / row['step_s'] / 1e12:8.2f}"
    )
  return lines


def _setup_from_flags() -> Setup:
  preset = _PRESET.value or ("tiny" if jax.default_backend() == "cpu" else "table8")
  frames, size, batch = SHAPES[preset]
  return Setup(
    preset=preset,
    batch=_BATCH.value or batch,
    frames=_FRAMES.value or frames,
    image_size=_SIZE.value or size,
    dtype=_DTYPE.value,
    vdm_temporal=_TEMPORAL.value,
    attention=_ATTENTION.value,
  )


def main(argv):
  del argv
  setup = _setup_from_flags()
  if _ONLY.value:  # child process of _isolated_peak: one variant, then its peak
    v = step_variant(model_configs(setup)[_ONLY.value], setup)
    _timed(v["fn"], *v["args"])
    print("PEAK_JSON " + json.dumps({"peak_bytes": xla_analysis.device_peak_bytes()}))
    return
  if _COMPILE_ONLY.value:  # both steps and samplers into the persistent compile cache
    for name, config in model_configs(setup).items():
      v = step_variant(config, setup)
      if _SAMPLER_STEPS.value:
        sampler = sampler_variant(v, config, setup, _SAMPLER_STEPS.value, calls=1)
        first = f", sampler {sampler['sampler_first_call_s']:.1f} s"
      else:
        first = ""
      print(f"compiled {name}: step {v['compile_s']:.1f} s{first}")
    if _PARTS.value:
      for name, part in part_variants(model_configs(setup), setup).items():
        print(f"compiled {name}: {part['compile_s']:.1f} s")
    return
  device_keeps_stats = xla_analysis.device_peak_bytes() is not None
  isolate = {"yes": True, "no": False}.get(_ISOLATE.value, device_keeps_stats)
  result = run(
    setup,
    steps=_STEPS.value,
    sampler_steps=_SAMPLER_STEPS.value,
    sampler_calls=_SAMPLER_CALLS.value,
    isolate_memory=isolate,
    parts=_PARTS.value,
    profile=_PROFILE.value,
  )
  provenance.emit(result, format_table(result), tag="TABLE4", json_path=_JSON.value)


def _define_flags() -> None:
  """Command-line flags, defined only when run as a script (tests import the
  module next to other benchmarks, whose flags share names)."""
  global _PRESET, _BATCH, _FRAMES, _SIZE, _DTYPE, _STEPS
  global _SAMPLER_STEPS, _SAMPLER_CALLS, _TEMPORAL, _JSON, _ISOLATE, _ONLY, _COMPILE_ONLY
  global _PARTS, _ATTENTION, _PROFILE
  _PRESET = flags.DEFINE_enum(
    "preset",
    None,
    list(SHAPES),
    "Model sizes: tiny (Table 8 / 4, CPU), table8, table9, micro "
    "(tests) (default: tiny on CPU, table8 elsewhere).",
  )
  _BATCH = flags.DEFINE_integer("batch", 0, "Videos per step (0: the preset's).")
  _FRAMES = flags.DEFINE_integer("frames", 0, "Frames per video (0: the preset's).")
  _SIZE = flags.DEFINE_integer("image_size", 0, "Frame size (0: the preset's).")
  _DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
  _STEPS = flags.DEFINE_integer("steps", 20, "Timed step calls per variant (>= 20).")
  _SAMPLER_STEPS = flags.DEFINE_integer("sampler_steps", 50, "DDIM steps (0: skip).")
  _SAMPLER_CALLS = flags.DEFINE_integer("sampler_calls", 3, "Timed sampler calls.")
  _TEMPORAL = flags.DEFINE_enum(
    "vdm_temporal",
    "attention",
    ["attention", "all"],
    "VDM* temporal layers: after spatial attention, or all.",
  )
  _ATTENTION = flags.DEFINE_enum(
    "attention",
    "xla",
    ["xla", "cudnn"],
    "model.attention of both models (cudnn: bfloat16 on a GPU).",
  )
  _JSON = flags.DEFINE_string("json", "", "Also write the result to this JSON file.")
  _ISOLATE = flags.DEFINE_enum(
    "isolate_memory",
    "auto",
    ["auto", "yes", "no"],
    "Peak memory of each variant in a fresh process (auto: where the device reports memory_stats).",
  )
  _ONLY = flags.DEFINE_enum("only", None, list(VARIANTS), "Internal: one variant's peak.")
  _PARTS = flags.DEFINE_bool(
    "parts",
    True,
    "Also time the steps' pieces alone (VideoFusion's base and residual "
    "U-Nets, VDM*'s U-Net without temporal layers): what dominates each step.",
  )
  _PROFILE = flags.DEFINE_bool(
    "profile",
    True,
    "Also trace 3 calls of each step with the profiler and print its "
    "op time by layer and op kind (op_profile.py).",
  )
  _COMPILE_ONLY = flags.DEFINE_bool(
    "compile_only",
    False,
    "Compile both variants' step and sampler and exit: fills "
    "JAX_COMPILATION_CACHE_DIR so a timed run later loads instead of compiling.",
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main)
