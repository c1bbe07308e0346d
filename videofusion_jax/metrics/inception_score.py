"""Inception Score of generated videos with the UCF101 C3D classifier (TGAN protocol).

IS = exp(E_x KL(p(y|x) || p(y))), p(y) the mean prediction, computed per split of the
videos (10 splits, contiguous, as Salimans et al.'s code) and reported as mean and std
over splits; in float64 with 0 log 0 = 0, so uniform predictions score exactly 1 and
confident predictions spread evenly over K classes score exactly K.

Preprocessing as the TGAN IS script: uint8 RGB frames resized to 128x128 (OpenCV
bicubic; a no-op for the paper's 128x128 videos), flipped to BGR, the C3D clip mean
subtracted, centre crop 112x112 (8:120), then C3D softmax over the 101 classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.special import xlogy

from videofusion_jax.metrics import c3d
from videofusion_jax.metrics.features import FeatureExtractor
from videofusion_jax.metrics.resize import resize_frames

SPLITS = 10
FRAMES = 16


def inception_score(probs, splits: int = SPLITS) -> tuple[float, float]:
  """(mean, std) over `splits` contiguous splits of (n, K) class probabilities."""
  p = np.asarray(probs, np.float64)
  if p.ndim != 2 or len(p) < splits or splits < 1:
    raise ValueError(
      f"class probabilities of shape {p.shape} for {splits} splits; expected "
      f"(n >= {max(splits, 1)}, K)"
    )
  if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
    raise ValueError(
      "class probabilities must be non-negative and sum to 1 per video "
      "(pass softmax outputs, not logits)"
    )
  n = len(p)
  scores = []
  for i in range(splits):
    part = p[i * n // splits : (i + 1) * n // splits]
    marginal = part.mean(axis=0, keepdims=True)
    kl = (xlogy(part, part) - xlogy(part, np.broadcast_to(marginal, part.shape))).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def preprocess(videos, mean):
  """uint8 RGB (B, 16, H, W, 3) -> demeaned BGR crop (B, 16, 112, 112, 3) float32."""
  x = jnp.asarray(videos, jnp.float32)
  if x.shape[2:4] != (128, 128):
    # cv2.resize on uint8 frames: bicubic, then rounded and saturated to uint8
    x = jnp.clip(jnp.round(resize_frames(x, 128, 128, "opencv_cubic")), 0, 255)
  x = x[..., ::-1] - jnp.asarray(mean)
  return x[:, :, 8:120, 8:120, :]


def c3d_classifier(weights: str, *, batch_size: int = 16) -> FeatureExtractor:
  """FeatureExtractor: uint8 clips of 16 frames -> C3D UCF101 probabilities (B, 101)."""
  model, mean = c3d.load_c3d(weights)
  graphdef, state = nnx.split(model)

  @jax.jit
  def probs(state, videos):
    return jax.nn.softmax(nnx.merge(graphdef, state)(preprocess(videos, mean)), axis=-1)

  return FeatureExtractor(
    name="c3d-ucf101-probs",
    apply=lambda v: probs(state, v),
    batch_size=batch_size,
    num_frames=FRAMES,
    settings={"resize": "opencv_cubic to 128", "crop": "8:120", "weights": str(weights)},
  )
