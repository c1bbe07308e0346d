"""The device mesh, logical->mesh axis rules, and sharded state creation.

One mesh of three axes, `data` (batch), `fsdp` (batch, and parameters sharded by
their `embed` axis) and `tensor` (parameters' `mlp`/`heads` axes), sized by
`config.mesh` with -1 meaning "the rest of the devices". Models name their axes
logically (`models/logical_axes.py`); `config.mesh.rules` maps names to mesh axes.
This module is the only place, besides configs, where mesh axis names appear.

State is created sharded: shapes first (`jax.eval_shape`), shardings from the rules,
then one `jax.jit(init, out_shardings=...)`, so a model larger than one device's
memory is never materialised on a single device. Restores use the same shardings.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from videofusion_jax.models.logical_axes import state_logical_axes

MESH_AXES = ("data", "fsdp", "tensor")
# Logical names a model or a batch may use; `mesh.rules` in the config maps them onto MESH_AXES.
LOGICAL_AXES = ("batch", "frames", "height", "width", "embed", "mlp", "heads")

Rules = Mapping[str, tuple[str, ...]]


def mesh_shape(mesh_config, num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) sizes from `config.mesh`, one of them possibly -1."""
  sizes = [int(mesh_config[a]) for a in MESH_AXES]
  fields = ", ".join(f"mesh.{a}={s}" for a, s in zip(MESH_AXES, sizes))
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"{fields}: expected positive sizes, at most one of them -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"{fields}: {num_devices} devices do not divide by {known}")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(
      f"{fields} make a mesh of {math.prod(sizes)} devices; there are "
      f"{num_devices} (use -1 for 'the rest')"
    )
  return tuple(sizes)


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The (data, fsdp, tensor) mesh over `devices` (all by default), `Auto` axes.

  With `mesh.num_slices > 1` the data axis spans slices over the slow network and the
  other axes stay inside a slice, where the interconnect is fast (`multi_slice_grid`).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  _avoid_shardy_miscompile(shape)
  axis_types = (AxisType.Auto,) * len(MESH_AXES)
  slices = int(mesh_config.num_slices)
  if slices > 1:
    return Mesh(multi_slice_grid(shape, slices, devices), MESH_AXES, axis_types=axis_types)
  return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


def multi_slice_grid(shape: Sequence[int], slices: int, devices: Sequence[Any]) -> np.ndarray:
  """The (data, fsdp, tensor) array of `devices` with the data axis split across
  `slices` groups, fsdp and tensor inside one group: TPU slices (`device.slice_index`,
  multi-slice over DCN), or, where devices have no slice index (GPUs), consecutive
  blocks of processes: one block per node when each node runs one process, or one per
  GPU in rank order (SLURM's block distribution), so NVLink carries fsdp and tensor and
  the network only the data axis. Group k holds rows k*data/slices ... of the data axis.
  """
  data, fsdp, tensor = shape
  if data % slices:
    raise ValueError(f"mesh.data={data} must be a multiple of mesh.num_slices={slices}")
  if hasattr(devices[0], "slice_index"):
    found = len({d.slice_index for d in devices})
    if found != slices:
      raise ValueError(
        f"mesh.num_slices={slices}, but the {len(devices)} devices are in {found} TPU slices"
      )
    from jax.experimental import mesh_utils  # TPU: each slice laid out by its torus

    return mesh_utils.create_hybrid_device_mesh(
      (data // slices, fsdp, tensor), (slices, 1, 1), devices
    )
  ranks = sorted({d.process_index for d in devices})
  if len(ranks) % slices:
    raise ValueError(
      f"mesh.num_slices={slices}, but the {len(devices)} devices belong to "
      f"{len(ranks)} processes, which do not split into {slices} groups "
      "(these devices have no slice index)"
    )
  per_group = len(ranks) // slices
  group = {rank: i // per_group for i, rank in enumerate(ranks)}
  ordered = sorted(devices, key=lambda d: (group[d.process_index], d.process_index, d.id))
  return np.array(ordered, dtype=object).reshape(data, fsdp, tensor)


def _avoid_shardy_miscompile(shape: Sequence[int]) -> None:
  """Use the GSPMD partitioner when data, fsdp and tensor are all split.

  With jax 0.10.2 the default Shardy partitioner gave wrong U-Net outputs on a 2x2x2
  CPU mesh (batch over data+fsdp, weights over fsdp+tensor): half of the batch shards
  were off by O(1) while every layer alone, and every two-axis mesh, matched one
  device; GSPMD matched to 2e-6 (tests/parallel/test_sharding.py checks it). Process-
  wide, since partitioning happens when a jitted function is first lowered.
  """
  if all(s > 1 for s in shape) and jax.config.jax_use_shardy_partitioner:
    logging.warning(
      "mesh %s splits data, fsdp and tensor: switching to the GSPMD "
      "partitioner (Shardy miscompiles this layout in jax %s).",
      shape,
      jax.__version__,
    )
    jax.config.update("jax_use_shardy_partitioner", False)


def rules_from_config(rules: Sequence[Sequence[Any]]) -> dict[str, tuple[str, ...]]:
  """`config.mesh.rules`, pairs (logical name, mesh axis or axes or None) -> a dict."""
  out = {}
  for entry in rules:
    if len(entry) != 2:
      raise ValueError(f"mesh.rules entry {entry!r}; expected (logical_name, mesh_axes)")
    name, axes = entry
    if name not in LOGICAL_AXES:
      raise ValueError(f"mesh.rules names logical axis {name!r}; known: {LOGICAL_AXES}")
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    bad = [a for a in axes if a not in MESH_AXES]
    if bad:
      raise ValueError(f"mesh.rules maps {name!r} to {bad}; mesh axes are {MESH_AXES}")
    out[name] = axes
  return out


def to_mesh_spec(
  logical: Sequence[str | None], shape: Sequence[int], rules: Rules, mesh: Mesh
) -> P:
  """Logical names of an array's dimensions -> its mesh `PartitionSpec`.

  A dimension is sharded over the mesh axes its name maps to, skipping axes an earlier
  dimension already uses and, from the last, axes it cannot divide evenly over (a
  3-channel `conv_in` stays replicated on a 4-way fsdp axis): no rule ever makes an
  array unshardable, it only shards it less.
  """
  used, spec = set(), []
  for name, size in zip(logical, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in rules:
      raise ValueError(f"logical axis {name!r} has no rule in mesh.rules; known: {sorted(rules)}")
    axes = [a for a in rules[name] if a not in used and mesh.shape[a] > 1]
    while axes and size % math.prod(mesh.shape[a] for a in axes):
      axes.pop()
    used.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
  return P(*spec)


def logical_sharding(
  logical: Sequence[str | None], shape: Sequence[int], rules: Rules, mesh: Mesh
) -> NamedSharding:
  return NamedSharding(mesh, to_mesh_spec(logical, shape, rules, mesh))


def state_shardings(abstract_state, rules: Rules, mesh: Mesh):
  """NamedShardings for every leaf of a (model, optimizer) state or a param tree."""
  logical = state_logical_axes(abstract_state)
  return jax.tree.map(
    lambda spec, x: logical_sharding(tuple(spec), x.shape, rules, mesh),
    logical,
    abstract_state,
    is_leaf=lambda s: isinstance(s, P),
  )


def batch_sharding(global_batch_size: int, rules: Rules, mesh: Mesh) -> NamedSharding:
  """Arrays of any rank whose leading axis is the batch (videos (B, N, H, W, C),
  labels (B,)): the leading axis over the mesh axes of the `batch` rule."""
  return NamedSharding(mesh, P(to_mesh_spec(("batch",), (global_batch_size,), rules, mesh)[0]))


def activation_shardings(rules: Rules, mesh: Mesh) -> Callable | None:
  """(logical axes, shape) -> NamedSharding, for `models.logical_axes.constrain` while a
  sharded step or sampler is traced; None on one device (nothing to pin) and under the
  GSPMD partitioner.

  Measured on 8 CPU devices (benchmarks/RESULTS.md): with Shardy, pinning cuts what a
  tensor-parallel step sends by ~40% and is exact. GSPMD, which `make_mesh` switches to
  when data, fsdp and tensor are all split, computes the pinned U-Net wrongly for half
  the batch shards (O(1) errors after the first attention layer; unpinned it is exact),
  so there the layout is left to propagation.
  """
  if mesh.size == 1 or not jax.config.jax_use_shardy_partitioner:
    return None
  return lambda logical, shape: logical_sharding(logical, shape, rules, mesh)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_size_check(global_batch: int, rules: Rules, mesh: Mesh, name: str) -> None:
  """The global batch must split evenly over the mesh axes that shard `batch`."""
  ways = math.prod(mesh.shape[a] for a in rules.get("batch", ()))
  if global_batch % ways:
    raise ValueError(
      f"{name}={global_batch} does not divide over the {ways} devices of "
      f"the mesh axes {rules.get('batch')} that shard the batch "
      f"(mesh {dict(mesh.shape)})"
    )


def sharded_init(create: Callable[[], Any], abstract, rules: Rules, mesh: Mesh):
  """-> (jitted `init()` returning `create()`'s arrays already sharded, their shardings,
  the restore target: ShapeDtypeStructs carrying those shardings).

  `abstract` is `create()`'s output as shapes (e.g. from `nnx.eval_shape`), so the
  (slow, for billions of parameters) trace of the initialisers happens once here.
  """
  shardings = state_shardings(abstract, rules, mesh)
  target = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )
  return jax.jit(create, out_shardings=shardings), shardings, target


def global_batch(local: Mapping[str, np.ndarray], sharding: NamedSharding) -> dict:
  """This process's rows of a batch -> global arrays split by `sharding` (numeric
  entries only: string labels stay on the host; nested dicts such as `cond` recurse)."""
  out = {}
  for k, v in local.items():
    if isinstance(v, Mapping):
      out[k] = global_batch(v, sharding)
    elif (v := np.asarray(v)).dtype.kind in "biuf":
      out[k] = jax.make_array_from_process_local_data(sharding, v)
  return out


def maybe_initialize_distributed(distributed_config) -> bool:
  """`jax.distributed.initialize()` when configured, or when a cluster is detected.

  `distributed.enabled`: "auto" (initialise when a multi-process SLURM job, a multi-host
  TPU slice or JAX_COORDINATOR_ADDRESS is detected), "true" or "false". Explicit
  `coordinator_address`, `num_processes` and `process_id` override detection (as the
  2-process test on 127.0.0.1 does). Returns whether it initialised.
  """
  enabled = str(distributed_config.enabled).lower()
  if enabled not in ("auto", "true", "false"):
    raise ValueError(
      f"distributed.enabled={distributed_config.enabled!r}; expected 'auto', 'true' or 'false'"
    )
  if enabled == "false" or (enabled == "auto" and not _multi_process_env()):
    return False
  if jax.distributed.is_initialized():  # a second train()/sample() in one process
    return True
  kwargs = {
    k: distributed_config[k]
    for k in ("coordinator_address", "num_processes", "process_id")
    if distributed_config.get(k) not in (None, "", -1)
  }
  logging.info("jax.distributed.initialize(%s)", kwargs)
  jax.distributed.initialize(**kwargs)
  return True


def _multi_process_env() -> bool:
  """A cluster with more than one process to join (a single-host TPU VM or a one-task
  SLURM job has nothing to join)."""
  if "JAX_COORDINATOR_ADDRESS" in os.environ or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ:
    return True
  if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
    return True
  return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
