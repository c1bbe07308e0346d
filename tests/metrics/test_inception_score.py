"""Inception Score math with known classifiers; the C3D port against a PyTorch C3D."""

import numpy as np
import pytest
from flax import nnx

from videofusion_jax.metrics import c3d, inception_score


def test_uniform_predictions_score_one():
  mean, std = inception_score.inception_score(np.full((50, 101), 1 / 101), splits=10)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 7, 101])
def test_confident_predictions_spread_over_k_classes_score_k(k):
  probs = np.tile(np.eye(101)[:k], (10, 1))  # every split holds each class once
  mean, std = inception_score.inception_score(probs, splits=10)
  assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_known_mixture_and_per_split_std():
  # split 1: one confident and one uniform prediction over 2 classes; split 2: all one class.
  p = np.array([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0]])
  marginal = np.array([0.75, 0.25])
  kl1 = np.log(1 / 0.75)
  kl2 = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)
  s1, s2 = np.exp((kl1 + kl2) / 2), 1.0
  assert marginal.sum() == 1
  mean, std = inception_score.inception_score(p, splits=2)
  assert mean == pytest.approx((s1 + s2) / 2, rel=1e-12)
  assert std == pytest.approx(abs(s1 - s2) / 2, rel=1e-12)


def test_bad_probabilities_raise():
  with pytest.raises(ValueError, match="softmax"):
    inception_score.inception_score(np.random.default_rng(0).normal(size=(20, 5)))
  with pytest.raises(ValueError, match="n >= 10"):
    inception_score.inception_score(np.full((5, 3), 1 / 3), splits=10)


TINY = dict(widths=(4, 4, 8, 8, 8, 8, 8, 8), fc=16, num_classes=101)


def _torch_c3d(torch, widths, fc, num_classes):
  """An independent C3D as Chainer defines it: pad-1 convs, ceil-mode pool5, (C,T,H,W) flatten."""
  nn = torch.nn
  layers, cin = [], 3
  pools = {0: (1, 2, 2), 1: (2, 2, 2), 3: (2, 2, 2), 5: (2, 2, 2), 7: (2, 2, 2)}
  for i, w in enumerate(widths):
    layers += [nn.Conv3d(cin, w, 3, padding=1), nn.ReLU()]
    if i in pools:
      layers.append(nn.MaxPool3d(pools[i], stride=pools[i], ceil_mode=(i == 7)))
    cin = w
  layers += [
    nn.Flatten(),
    nn.Linear(cin * 16, fc),
    nn.ReLU(),
    nn.Linear(fc, fc),
    nn.ReLU(),
    nn.Linear(fc, num_classes),
  ]
  return nn.Sequential(*layers)


def _load_into(net, weights):
  """Copy Chainer-named weights into the torch C3D (Chainer and PyTorch layouts agree)."""
  import torch

  layers = [m for m in net if m.__class__.__name__ in ("Conv3d", "Linear")]
  with torch.no_grad():
    for name, m in zip(c3d.CONVS + c3d.FCS, layers):
      m.weight.copy_(torch.from_numpy(weights[f"predictor/{name}/W"]))
      m.bias.copy_(torch.from_numpy(weights[f"predictor/{name}/b"]))
  return net


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
  """Random tiny C3D weights in the Chainer layout, converted to our npz."""
  rng = np.random.default_rng(0)
  w, cin, weights = TINY["widths"], 3, {}
  for name, cout in zip(c3d.CONVS, w):
    weights[f"predictor/{name}/W"] = rng.normal(0, (27 * cin) ** -0.5, (cout, cin, 3, 3, 3))
    weights[f"predictor/{name}/b"] = rng.normal(0, 0.1, cout)
    cin = cout
  for name, (i, o) in zip(
    c3d.FCS, [(cin * 16, TINY["fc"]), (TINY["fc"], TINY["fc"]), (TINY["fc"], TINY["num_classes"])]
  ):
    weights[f"predictor/{name}/W"] = rng.normal(0, i**-0.5, (o, i))
    weights[f"predictor/{name}/b"] = rng.normal(0, 0.1, o)
  weights = {k: v.astype(np.float32) for k, v in weights.items()}
  mean = rng.uniform(80, 120, 3 * 16 * 128 * 171).astype(np.float32)
  path = tmp_path_factory.mktemp("c3d") / "c3d_tiny.npz"
  np.savez(path, **c3d.convert_chainer(weights, mean))
  return weights, mean, path


def test_c3d_matches_a_pytorch_c3d_through_the_chainer_conversion(tiny_weights):
  torch = pytest.importorskip("torch")
  weights, _, path = tiny_weights
  net = _load_into(_torch_c3d(torch, **TINY).eval(), weights)
  model, _ = c3d.load_c3d(path)
  x = np.random.default_rng(2).normal(0, 50, (2, 16, 112, 112, 3)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).numpy()
  got = np.asarray(nnx.jit(lambda m, x: m(x))(model, x))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  assert np.abs(want).max() > 0.1  # not a trivially zero output


def test_classifier_preprocessing_and_probabilities(tiny_weights):
  _, raw_mean, path = tiny_weights
  _, mean = c3d.load_c3d(path)
  np.testing.assert_array_equal(  # BGR mean, width crop 21:149
    mean[3, 5, 7], raw_mean.reshape(3, 16, 128, 171)[:, 3, 5, 7 + 21]
  )
  videos = np.random.default_rng(3).integers(0, 256, (3, 16, 128, 128, 3), np.uint8)
  x = np.asarray(inception_score.preprocess(videos, mean))
  assert x.shape == (3, 16, 112, 112, 3)
  np.testing.assert_allclose(x[1, 2, 0, 0], videos[1, 2, 8, 8, ::-1] - mean[2, 8, 8], atol=1e-4)
  small = np.full((1, 16, 64, 80, 3), 200, np.uint8)  # not 128: bicubic resize first
  np.testing.assert_allclose(
    np.asarray(inception_score.preprocess(small, mean))[0], 200.0 - mean[:, 8:120, 8:120], atol=1e-3
  )
  clf = inception_score.c3d_classifier(str(path), batch_size=3)
  probs = np.asarray(clf.apply(videos))
  assert probs.shape == (3, 101) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_missing_c3d_weights_name_the_path_and_the_source(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"absent\.npz.*conv3d_deepnetA_ucf"):
    c3d.load_c3d(tmp_path / "absent.npz")
  with pytest.raises(ValueError, match="lack conv1a/W or conv1a/b"):
    c3d.convert_chainer({"conv1a/W": np.zeros((1,))}, np.zeros(3 * 16 * 128 * 171))
