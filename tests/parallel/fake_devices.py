"""Sharding checks on 8 fake CPU devices, run as its own process by test_sharding.py.

jax fixes its device count at start-up, so these checks cannot share the test
process; they print one JSON object that the tests assert on.

  python -m tests.parallel.fake_devices WORKDIR     # from the repository root
"""

import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 8)

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from videofusion_jax import diffusion, parallel  # noqa: E402
from videofusion_jax.checkpoint import Checkpoints  # noqa: E402
from videofusion_jax.configs import demo  # noqa: E402
from videofusion_jax.models.from_config import model_spec  # noqa: E402
from videofusion_jax.sampling.generate import SamplerConfig, VideoSampler  # noqa: E402
from videofusion_jax.tools.collectives import collectives  # noqa: E402
from videofusion_jax.training.loop import create_state, step_shardings  # noqa: E402
from videofusion_jax.training.step import StepConfig, make_train_step  # noqa: E402

# 2x2x2 last: its mesh switches the process to GSPMD (parallel._avoid_shardy_miscompile).
MESHES = {"8x1x1": (8, 1, 1), "2x4x1": (2, 4, 1), "2x1x4": (2, 1, 4), "2x2x2": (2, 2, 2)}
# Leaves whose mesh sharding the tests check against hand-written expectations.
GOLDEN = (
  "residual/conv_in/kernel",
  "residual/down_blocks/1/resnets/0/conv1/kernel",
  "residual/down_blocks/1/resnets/0/conv2/kernel",
  "residual/down_blocks/1/resnets/0/conv1/bias",
  "base/down_blocks/1/attentions/0/to_q/kernel",
  "base/down_blocks/1/attentions/0/to_out/kernel",
  "base/time_embedding/linear_1/kernel",
  "base/conv_norm_out/scale",
)


def tiny_config(mesh_shape) -> ml_collections.ConfigDict:
  config = demo.get_config("setting=tiny")
  config.train.batch_size = 8  # one clip per device
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = mesh_shape
  return config


def path_str(path) -> str:
  parts = []
  for p in path:
    key = getattr(p, "key", getattr(p, "name", None))
    if key != "value":
      parts.append(str(key))
  return "/".join(parts)


def spec_of(sharding) -> list:
  return [list(a) if isinstance(a, tuple) else a for a in sharding.spec]


def leaves(tree) -> dict:
  return {path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def one_step(config, mesh, state_values, ema_values, pin_activations=True):
  """Loss of one train step on `mesh`, with the state placed on its planned shardings,
  and the collectives of the compiled step."""
  spec = model_spec(config)
  rules = parallel.rules_from_config(config.mesh.rules)
  ts = create_state(spec, config, mesh, rules, allocate=False)
  state, ema = jax.device_put((state_values, ema_values), ts.shardings)
  config = config.copy_and_resolve_references()
  config.mesh.pin_activations = pin_activations
  shardings = step_shardings(ts, config, mesh, rules)
  batch_sh = shardings.batch
  step = make_train_step(ts.graphdef, StepConfig(lam=spec.config.lam), shardings=shardings)
  schedule = diffusion.make_schedule("cosine", 1000)
  video = np.asarray(jax.random.uniform(jax.random.key(3), (8, 4, 16, 16, 3), minval=-1))
  batch = parallel.global_batch({"video": video}, batch_sh)
  args = (state, ema, batch, jax.random.key(7), schedule)
  compiled = step.lower(*args).compile()  # one compile, read and run
  sent = collectives(compiled.as_text())
  state, ema, metrics = compiled(*args)
  return float(metrics["loss"]), state, ema, sent


def sample(config, mesh, ema_values) -> np.ndarray:
  """Three videos (2 DDIM steps, batches of 2: the second padded) from the EMA on `mesh`."""
  spec = model_spec(config)
  rules = parallel.rules_from_config(config.mesh.rules)
  ts = create_state(spec, config, mesh, rules, allocate=False)
  ema = jax.device_put(ema_values, ts.shardings[1])
  sampler = VideoSampler(
    ts.model_graphdef,
    spec.config,
    num_frames=4,
    image_size=16,
    batch_size=2,
    config=SamplerConfig(num_steps=2),
    mesh=mesh,
    rules=rules,
  )
  return np.concatenate(
    list(
      sampler.batches(
        ema, diffusion.make_schedule("cosine", 1000), num_videos=3, base_seed=1, residual_seed=2
      )
    )
  )


def communication(sent) -> dict:
  return {
    "elements": sent.elements,
    "by_kind": sent.elements_by_kind(),
    "largest_all_to_all": sent.largest("all-to-all"),
  }


def main(workdir: str, step_meshes: list[str]) -> None:
  out = {"devices": jax.device_count(), "meshes": {}}
  # Reference: the same initial values, on one device.
  config1 = tiny_config((1, 1, 1))
  mesh1 = parallel.make_mesh(config1.mesh, jax.devices()[:1])
  rules = parallel.rules_from_config(config1.mesh.rules)
  ref = create_state(model_spec(config1), config1, mesh1, rules)
  values = jax.device_get((ref.state, ref.ema))
  out["loss_one_device"] = one_step(config1, mesh1, *values)[0]
  full_run = len(step_meshes) == len(MESHES)
  videos_one_device = sample(config1, mesh1, values[1]) if full_run else None

  for name, shape in MESHES.items():
    config = tiny_config(shape)
    mesh = parallel.make_mesh(config.mesh)
    allocate = name == "2x2x2"  # one jitted, sharded init is enough to check the plan
    ts = create_state(model_spec(config), config, mesh, rules, allocate=allocate)
    planned = {k: spec_of(s) for k, s in leaves(ts.shardings[0]).items()}
    moments = {k: v for k, v in planned.items() if "/mu/" in k or "/nu/" in k}
    params = {k[2:]: v for k, v in planned.items() if k.startswith("0/")}
    report = out["meshes"][name] = {
      "golden": {k: params[k] for k in GOLDEN},
      "moments_follow_params": all(
        v == params[k.split("/mu/")[-1] if "/mu/" in k else k.split("/nu/")[-1]]
        for k, v in moments.items()
      ),
      "num_moments": len(moments),
    }
    if allocate:
      report["planned_equals_actual"] = planned == {
        k: spec_of(x.sharding) for k, x in leaves(ts.state).items()
      }
      report["init_max_abs_diff_vs_one_device"] = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(ts.state), jax.tree.leaves(values[0]))
      )
    if name in step_meshes:
      loss, state, _, sent = one_step(config, mesh, *values)
      report["loss"] = loss
      report["state_after_step_on_plan"] = planned == {
        k: spec_of(x.sharding) for k, x in leaves(state).items()
      }
      report["communication"] = communication(sent)
      if full_run:  # the slow run: also the unpinned layout
        unpinned = one_step(config, mesh, *values, pin_activations=False)
        report["unpinned"] = {"loss": unpinned[0], **communication(unpinned[3])}
    if full_run and name == "2x1x4":  # tensor parallel, pinned: the sampler agrees too
      report["sample_max_abs_diff_vs_one_device"] = float(
        np.max(np.abs(sample(config, mesh, values[1]) - videos_one_device))
      )
    if name == "8x1x1":  # save here, restore onto 2x4x1 below
      placed = jax.device_put(values, ts.shardings)
      ckpt = Checkpoints(workdir)
      ckpt.save(1, *placed, None, config, force=True)
      ckpt.close()

  config = tiny_config((2, 4, 1))
  mesh = parallel.make_mesh(config.mesh)
  ts = create_state(model_spec(config), config, mesh, rules, allocate=False)
  ckpt = Checkpoints(workdir)
  restored = ckpt.restore(1, state=ts.target[0], ema=ts.target[1])
  ckpt.close()
  pairs = zip(jax.tree.leaves((restored["state"], restored["ema"])), jax.tree.leaves(values))
  out["restore_8x1x1_onto_2x4x1"] = {
    "equal": all(np.array_equal(np.asarray(a), b) for a, b in pairs),
    "on_target_shardings": {k: spec_of(x.sharding) for k, x in leaves(restored["state"]).items()}
    == {k: spec_of(s) for k, s in leaves(ts.shardings[0]).items()},
  }
  out["shardy"] = bool(jax.config.jax_use_shardy_partitioner)
  print("RESULT " + json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2].split(",") if len(sys.argv) > 2 else ["2x2x2"])
