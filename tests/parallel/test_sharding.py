"""Shardings on 8 fake CPU devices: planned layouts, sharded train step, cross-mesh restore.

The checks run once, in a child process started with 8 devices (fake_devices.py);
each test asserts one property of its report.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.flow  # make test-flows (pyproject.toml: markers)

ROOT = Path(__file__).parents[2]  # `python -m tests.parallel...` runs from here
MESHES = ["8x1x1", "2x4x1", "2x1x4", "2x2x2"]


def run_checks(workdir, step_meshes):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # The child sets its own device count (jax_num_cpu_devices); it keeps the other XLA
  # flags, such as conftest's fast compiles (all its steps are compile-bound).
  env["XLA_FLAGS"] = " ".join(
    f
    for f in env.get("XLA_FLAGS", "").split()
    if not f.startswith("--xla_force_host_platform_device_count")
  )
  proc = subprocess.run(
    [sys.executable, "-m", "tests.parallel.fake_devices", str(workdir), ",".join(step_meshes)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env=env,
    timeout=1800,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  """Train steps on the 2x2x2 mesh only (each mesh is one more compile); the slow test
  below runs them on all three."""
  return run_checks(tmp_path_factory.mktemp("fake_devices"), ["2x2x2"])


# Expected mesh PartitionSpecs, written from the rules of configs/base.py by hand:
# batch->(data, fsdp), embed->fsdp, mlp->tensor, heads->tensor; axes of size 1 dropped,
# and a dimension that does not divide (conv_in's 3 input channels) stays replicated.
GOLDEN = {
  "8x1x1": {},  # fsdp = tensor = 1: every parameter replicated
  "2x4x1": {
    "residual/conv_in/kernel": [None, None, None, None],  # in = 6 channels, 6 % 4 != 0
    "residual/down_blocks/1/resnets/0/conv1/kernel": [None, None, "fsdp", None],
    "residual/down_blocks/1/resnets/0/conv2/kernel": [None, None, None, "fsdp"],
    "residual/down_blocks/1/resnets/0/conv1/bias": [None],
    "base/down_blocks/1/attentions/0/to_q/kernel": ["fsdp", None],
    "base/down_blocks/1/attentions/0/to_out/kernel": [None, "fsdp"],
    "base/time_embedding/linear_1/kernel": ["fsdp", None],
    "base/conv_norm_out/scale": [None],
  },
  "2x1x4": {  # fsdp = 1: only the tensor (Megatron) splits
    "residual/conv_in/kernel": [None, None, None, "tensor"],
    "residual/down_blocks/1/resnets/0/conv1/kernel": [None, None, None, "tensor"],
    "residual/down_blocks/1/resnets/0/conv2/kernel": [None, None, "tensor", None],
    "residual/down_blocks/1/resnets/0/conv1/bias": ["tensor"],
    "base/down_blocks/1/attentions/0/to_q/kernel": [None, "tensor"],
    "base/down_blocks/1/attentions/0/to_out/kernel": ["tensor", None],
    "base/time_embedding/linear_1/kernel": [None, "tensor"],
    "base/conv_norm_out/scale": [None],
  },
  "2x2x2": {
    "residual/conv_in/kernel": [None, None, "fsdp", "tensor"],  # 6 % 2 == 0
    "residual/down_blocks/1/resnets/0/conv1/kernel": [None, None, "fsdp", "tensor"],
    "residual/down_blocks/1/resnets/0/conv2/kernel": [None, None, "tensor", "fsdp"],
    "residual/down_blocks/1/resnets/0/conv1/bias": ["tensor"],
    "base/down_blocks/1/attentions/0/to_q/kernel": ["fsdp", "tensor"],
    "base/down_blocks/1/attentions/0/to_out/kernel": ["tensor", "fsdp"],
    "base/time_embedding/linear_1/kernel": ["fsdp", "tensor"],
    "base/conv_norm_out/scale": [None],
  },
}


def test_runs_on_eight_devices(report):
  assert report["devices"] == 8


@pytest.mark.parametrize("mesh", MESHES)
def test_parameters_follow_their_logical_rules(report, mesh):
  got = report["meshes"][mesh]["golden"]
  for path, spec in got.items():
    expected = GOLDEN[mesh].get(path, [None] * len(spec))
    assert spec == expected, (mesh, path)


@pytest.mark.parametrize("mesh", MESHES)
def test_optimizer_moments_are_sharded_like_their_parameters(report, mesh):
  m = report["meshes"][mesh]
  assert m["moments_follow_params"] and m["num_moments"] > 0  # Adam mu/nu


def test_sharded_creation_and_step_keep_the_plan(report):
  m = report["meshes"]["2x2x2"]
  assert m["planned_equals_actual"]  # jitted init wrote each leaf where planned
  assert m["init_max_abs_diff_vs_one_device"] < 1e-6  # same initial values as 1 device
  assert m["state_after_step_on_plan"]  # the donated step returns the same layout


def test_sharded_step_gives_the_unsharded_loss(report):
  # data, fsdp and tensor all split: also checks the switch away from Shardy, which
  # gave a loss 0.7% off here (parallel._avoid_shardy_miscompile).
  assert report["meshes"]["2x2x2"]["loss"] == pytest.approx(report["loss_one_device"], rel=1e-5)
  assert report["shardy"] is False


# One frame's feature map at the tiny U-Net's coarsest level (8 x 8 x 32 channels).
SMALLEST_ACTIVATION = 8 * 8 * 32


@pytest.mark.slow
def test_every_mesh_gives_the_unsharded_loss(tmp_path):
  full = run_checks(tmp_path, MESHES)
  for mesh in MESHES:
    m = full["meshes"][mesh]
    assert m["loss"] == pytest.approx(full["loss_one_device"], rel=1e-5), mesh
    assert m["unpinned"]["loss"] == pytest.approx(full["loss_one_device"], rel=1e-5), mesh
    assert m["state_after_step_on_plan"]
    assert m["communication"]["elements"] <= m["unpinned"]["elements"], mesh
  # Tensor parallel under Shardy: propagated, the step all-to-alls whole feature maps at
  # the skip concatenations and all-gathers activations; pinned, only small pieces move.
  tp = full["meshes"]["2x1x4"]
  assert tp["unpinned"]["largest_all_to_all"] >= SMALLEST_ACTIVATION, tp
  assert tp["communication"]["largest_all_to_all"] < SMALLEST_ACTIVATION, tp
  assert tp["communication"]["elements"] < 0.7 * tp["unpinned"]["elements"], tp
  assert tp["sample_max_abs_diff_vs_one_device"] < 1e-4  # pinned sampler: same videos
  # Under GSPMD (all three axes split) nothing is pinned: the same program.
  three = full["meshes"]["2x2x2"]
  assert three["communication"] == {k: three["unpinned"][k] for k in three["communication"]}


def test_checkpoint_restores_onto_another_mesh(report):
  r = report["restore_8x1x1_onto_2x4x1"]
  assert r["equal"] and r["on_target_shardings"]
