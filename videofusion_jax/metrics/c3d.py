r"""C3D fine-tuned on UCF101, the classifier of the TGAN/TGANv2 Inception Score, in NNX.

TGAN-style IS scripts (TGAN, TGANv2, and the TATS evaluations that reuse them) score
16-frame clips with the Chainer `C3DVersion1` (Caffe C3D, UCF101-finetuned). Its weights
are on no package registry, so this module defines our own file, `c3d_ucf101.npz`:

  conv1a/kernel ... conv5b/kernel  (3, 3, 3, C_in, C_out)  float32, input channels BGR
  conv1a/bias   ... conv5b/bias    (C_out,)
  fc6/kernel (8192, 4096), fc7/kernel (4096, 4096), fc8/kernel (4096, 101), fc*/bias
  mean        (16, 128, 128, 3)  float32 BGR clip mean, subtracted before the 112 crop

and converts it from the Chainer files (`conv3d_deepnetA_ucf.npz`: `<layer>/W` as
(out, in, kt, kh, kw) or (out, in), `<layer>/b`; `mean2.npz`: `mean` of 3*16*128*171
values, BGR, width-cropped to 21:149 as the scripts do):

  python -m videofusion_jax.metrics.c3d --chainer_weights=conv3d_deepnetA_ucf.npz \
      --chainer_mean=mean2.npz --out=weights/c3d_ucf101.npz

Layers (Chainer defaults): 3x3x3 convolutions with padding 1 and ReLU; max pools
(1, 2, 2) after conv1a and (2, 2, 2) after conv2a, conv3b, conv4b, conv5b, the last with
Chainer's `cover_all` (ceil) rounding, i.e. 7x7 -> 4x4; features flattened in Chainer's
(C, T, H, W) order; fc6, fc7 with ReLU; fc8 -> 101 logits.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

CONVS = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
WIDTHS = (64, 128, 256, 256, 512, 512, 512, 512)
FCS = ("fc6", "fc7", "fc8")
CLIP = (16, 112, 112)  # frames, crop height, crop width the network takes
MEAN_SHAPE = (16, 128, 128, 3)
HOW_TO_GET = (
  "convert the UCF101-finetuned Chainer C3D of the TGAN/TGANv2 evaluation "
  "(conv3d_deepnetA_ucf.npz and its mean2.npz) with `python -m videofusion_jax.metrics.c3d "
  "--chainer_weights=conv3d_deepnetA_ucf.npz --chainer_mean=mean2.npz --out=PATH` "
  "(docs/evaluation.md)"
)


class C3D(nnx.Module):
  """(B, 16, 112, 112, 3) demeaned BGR in 0..255 units -> UCF101 logits (B, 101)."""

  def __init__(self, *, widths=WIDTHS, fc: int = 4096, num_classes: int = 101, rngs: nnx.Rngs):
    cin = 3
    for name, width in zip(CONVS, widths):
      setattr(self, name, nnx.Conv(cin, width, (3, 3, 3), padding=((1, 1),) * 3, rngs=rngs))
      cin = width
    self.fc6 = nnx.Linear(cin * 1 * 4 * 4, fc, rngs=rngs)
    self.fc7 = nnx.Linear(fc, fc, rngs=rngs)
    self.fc8 = nnx.Linear(fc, num_classes, rngs=rngs)

  def __call__(self, x):
    if x.shape[1:] != (*CLIP, 3):
      raise ValueError(f"C3D input of shape {x.shape}; expected (B, 16, 112, 112, 3)")
    relu = nnx.relu
    x = nnx.max_pool(relu(self.conv1a(x)), (1, 2, 2), strides=(1, 2, 2))
    x = nnx.max_pool(relu(self.conv2a(x)), (2, 2, 2), strides=(2, 2, 2))
    x = nnx.max_pool(relu(self.conv3b(relu(self.conv3a(x)))), (2, 2, 2), strides=(2, 2, 2))
    x = nnx.max_pool(relu(self.conv4b(relu(self.conv4a(x)))), (2, 2, 2), strides=(2, 2, 2))
    x = relu(self.conv5b(relu(self.conv5a(x))))  # (B, 2, 7, 7, C)
    x = nnx.max_pool(x, (2, 2, 2), strides=(2, 2, 2), padding=((0, 0), (0, 1), (0, 1)))
    x = jnp.transpose(x, (0, 4, 1, 2, 3)).reshape(x.shape[0], -1)  # Chainer's C, T, H, W
    return self.fc8(relu(self.fc7(relu(self.fc6(x)))))


def convert_chainer(weights: dict, mean: np.ndarray) -> dict[str, np.ndarray]:
  """Chainer `{.../<layer>/W, .../<layer>/b}` + raw mean -> our npz dictionary."""
  by_layer = {"/".join(k.split("/")[-2:]): np.asarray(v, np.float32) for k, v in weights.items()}
  out = {}
  for name in CONVS + FCS:
    if f"{name}/W" not in by_layer or f"{name}/b" not in by_layer:
      raise ValueError(
        f"Chainer C3D weights lack {name}/W or {name}/b; found {sorted(by_layer)[:10]}"
      )
    w = by_layer[f"{name}/W"]
    out[f"{name}/kernel"] = w.transpose(2, 3, 4, 1, 0) if w.ndim == 5 else w.T
    out[f"{name}/bias"] = by_layer[f"{name}/b"]
  mean = np.asarray(mean, np.float32)
  if mean.size != 3 * 16 * 128 * 171:
    raise ValueError(f"C3D mean of {mean.size} values; expected 3*16*128*171 (mean2.npz)")
  out["mean"] = np.ascontiguousarray(
    mean.reshape(3, 16, 128, 171)[..., 21 : 21 + 128].transpose(1, 2, 3, 0)
  )
  return out


def load_c3d(path: str | Path) -> tuple[C3D, np.ndarray]:
  """(C3D with the weights of PATH, BGR mean (16, 128, 128, 3)) from our npz format."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"C3D weights file {path} does not exist; {HOW_TO_GET}")
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files}
  if "mean" not in arrays or arrays["mean"].shape != MEAN_SHAPE:
    raise ValueError(f"{path}: 'mean' missing or not of shape {MEAN_SHAPE}")
  widths = tuple(int(arrays[f"{n}/kernel"].shape[-1]) for n in CONVS if f"{n}/kernel" in arrays)
  if len(widths) != len(CONVS) or any(f"{n}/kernel" not in arrays for n in FCS):
    raise ValueError(
      f"{path} is not a C3D file: expected {', '.join(CONVS + FCS)} "
      f"kernels and biases, found {sorted(arrays)[:12]}"
    )
  fc, classes = arrays["fc6/kernel"].shape[1], arrays["fc8/kernel"].shape[1]
  graphdef, state = nnx.split(
    nnx.eval_shape(lambda: C3D(widths=widths, fc=fc, num_classes=classes, rngs=nnx.Rngs(0)))
  )
  flat = dict(nnx.traversals.flatten_mapping(nnx.to_pure_dict(state)))
  for key, abstract in flat.items():
    name = "/".join(key)
    if name not in arrays or arrays[name].shape != abstract.shape:
      got = arrays[name].shape if name in arrays else "missing"
      raise ValueError(f"{path}: {name} is {got}; expected shape {abstract.shape}")
    flat[key] = jnp.asarray(arrays[name], jnp.float32)
  nnx.replace_by_pure_dict(state, nnx.traversals.unflatten_mapping(flat))
  return nnx.merge(graphdef, state), arrays["mean"]


def _cli() -> None:
  """The converter CLI; its flags are defined only when run as a script."""
  weights = flags.DEFINE_string(
    "chainer_weights", None, "Chainer C3D npz (conv3d_deepnetA_ucf.npz)."
  )
  mean = flags.DEFINE_string("chainer_mean", None, "Chainer mean npz (mean2.npz, key 'mean').")
  out = flags.DEFINE_string("out", "weights/c3d_ucf101.npz", "Where to write our npz.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with np.load(weights.value) as w, np.load(mean.value) as m:
      converted = convert_chainer({k: w[k] for k in w.files}, m["mean"])
    Path(out.value).parent.mkdir(parents=True, exist_ok=True)
    np.savez(out.value, **converted)
    print(f"wrote {out.value} ({len(converted)} arrays)")

  flags.mark_flags_as_required(["chainer_weights", "chainer_mean"])
  app.run(main)


if __name__ == "__main__":
  _cli()
