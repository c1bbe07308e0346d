"""`convert diffusers-prior`: a saved diffusers PriorTransformer folder -> orbax -> the same
outputs; bad folders, configs and keys fail naming them, leaving nothing behind."""

import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from tests.models.test_prior import TINY, inputs, torch_prior  # noqa: E402
from videofusion_jax.convert.diffusers_prior import (  # noqa: E402
  abstract_prior,
  convert_diffusers_prior,
  convert_prior_state_dict,
  prior_config_from_diffusers,
)
from videofusion_jax.sampling.prior import load_prior  # noqa: E402


@pytest.fixture(scope="module")
def saved_prior(tmp_path_factory):
  model = torch_prior(TINY, seed=1)
  folder = tmp_path_factory.mktemp("diffusers_prior") / "prior"
  model.save_pretrained(folder)
  return folder, model


def test_cli_round_trip_equals_the_torch_forward(saved_prior, tmp_path):
  folder, ref = saved_prior
  out = tmp_path / "converted"
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.convert",
      "diffusers-prior",
      f"--src={folder}",
      f"--out={out}",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert "load_prior" in run.stdout
  saved = json.loads((out / "prior_config.json").read_text())
  assert saved["prior"]["num_layers"] == 2 and saved["source"]["class_name"] == "PriorTransformer"
  prior, schedule = load_prior(out)
  assert schedule.num_timesteps == 1000
  x, t, proj, hidden, mask = inputs(prior.config)
  with torch.no_grad():
    want = ref(
      torch.from_numpy(x),
      torch.from_numpy(t),
      torch.from_numpy(proj),
      torch.from_numpy(hidden),
      torch.from_numpy(mask),
    ).predicted_image_embedding
    post = ref.post_process_latents(want).numpy()
  got = prior(*map(jnp.asarray, (x, t, proj, hidden, mask)))
  np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(prior.denormalise(got)), post, rtol=1e-4, atol=1e-5)


def test_unused_missing_and_misshapen_keys_are_named(saved_prior):
  _, ref = saved_prior
  config = prior_config_from_diffusers(dict(ref.config))
  sd = {k: v.numpy() for k, v in ref.state_dict().items()}
  abstract = abstract_prior(config)
  extra = dict(sd, **{"causal_attention_mask": np.zeros((1, 9, 9), np.float32)})
  with pytest.raises(ValueError, match="unused torch keys.*causal_attention_mask"):
    convert_prior_state_dict(extra, abstract)
  convert_prior_state_dict(extra, abstract, allow_unused=["causal_attention_mask"])
  missing = {k: v for k, v in sd.items() if k != "prd_embedding"}
  with pytest.raises(ValueError, match=r"missing torch keys \['prd_embedding'\]"):
    convert_prior_state_dict(missing, abstract)
  bad = dict(sd, clip_std=np.zeros((1, 7), np.float32))
  with pytest.raises(ValueError, match=r"'clip_std' has shape \(1, 7\)"):
    convert_prior_state_dict(bad, abstract)


@pytest.mark.parametrize(
  "change,match",
  [
    ({"_class_name": "UNet2DModel"}, "_class_name='UNet2DModel'"),
    ({"added_emb_type": None}, "added_emb_type=None"),
    ({"norm_in_type": "group"}, "norm_in_type='group'"),
    ({"wibble": 3}, r"fields we do not build: \['wibble'\]"),
  ],
)
def test_unsupported_configs_are_named(change, match):
  with pytest.raises(ValueError, match=match):
    prior_config_from_diffusers({**TINY, "_class_name": "PriorTransformer", **change})


def test_bad_folders_fail_and_leave_no_output(saved_prior, tmp_path):
  folder, _ = saved_prior
  with pytest.raises(FileNotFoundError, match="not a directory"):
    convert_diffusers_prior(tmp_path / "absent", tmp_path / "out")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json is missing"):
    convert_diffusers_prior(tmp_path / "empty", tmp_path / "out")
  # A truncated weights file: a clear error and no (partial) output folder.
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "config.json").write_text((folder / "config.json").read_text())
  data = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
  (broken / "diffusion_pytorch_model.safetensors").write_bytes(data[: len(data) // 2])
  with pytest.raises(ValueError, match="truncated"):
    convert_diffusers_prior(broken, tmp_path / "out")
  assert not any(p.name.startswith((".out", "out")) for p in tmp_path.iterdir())
  # An existing, non-empty output is kept unless --overwrite.
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "keep.txt").write_text("x")
  with pytest.raises(FileExistsError, match="not empty"):
    convert_diffusers_prior(folder, tmp_path / "taken")
  assert (tmp_path / "taken" / "keep.txt").exists()
