"""The reference scripts' resizes: TF1 bilinear, PyTorch bilinear, OpenCV bicubic."""

import numpy as np
import pytest

from videofusion_jax.metrics.resize import resize_frames, resize_matrix


def test_tf1_and_torch_bilinear_golden_values():
  row = np.array([0.0, 1.0], np.float32)
  # TF1 resize_bilinear (half_pixel_centers=False) samples i * in / out.
  np.testing.assert_allclose(resize_matrix(2, 4, "tf1") @ row, [0, 0.5, 1, 1])
  # PyTorch align_corners=False samples (i + 0.5) * in / out - 0.5, clamped at 0.
  np.testing.assert_allclose(resize_matrix(2, 4, "torch") @ row, [0, 0.25, 0.75, 1])
  # Shrinking does not antialias: TF1 4 -> 2 picks pixels 0 and 2.
  np.testing.assert_allclose(resize_matrix(4, 2, "tf1") @ np.arange(4.0), [0, 2])


@pytest.mark.parametrize("shape", [(7, 5), (300, 256), (128, 128)])
def test_torch_mode_matches_f_interpolate(shape):
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).uniform(0, 255, (2, *shape, 3)).astype(np.float32)
  want = (
    torch.nn.functional.interpolate(
      torch.from_numpy(x).permute(0, 3, 1, 2), size=(224, 224), mode="bilinear", align_corners=False
    )
    .permute(0, 2, 3, 1)
    .numpy()
  )
  got = np.asarray(resize_frames(x, 224, 224, "torch"))
  np.testing.assert_allclose(got, want, atol=1e-2)  # float32 weight rounding, 0..255 units


def test_opencv_cubic_weights():
  for n_in, n_out in ((64, 128), (171, 128), (5, 5)):
    w = resize_matrix(n_in, n_out, "opencv_cubic")
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)  # constants are kept
  # Upsampling by 2: output pixel 5 sits at source 2.25; OpenCV's a = -0.75 weights.
  t, a = 0.25, -0.75
  near = lambda d: (a + 2) * d**3 - (a + 3) * d**2 + 1
  far = lambda d: a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
  want = [far(1 + t), near(t), near(1 - t), far(2 - t)]  # sources 1, 2, 3, 4
  w = resize_matrix(8, 16, "opencv_cubic")[5]  # src = 5.5 / 2 - 0.5
  np.testing.assert_allclose(w[1:5], want, atol=1e-6)
  assert w[0] == 0 and np.all(w[5:] == 0)


def test_same_size_is_identity_and_bad_mode_raises():
  x = np.random.default_rng(1).uniform(size=(1, 2, 9, 9, 3)).astype(np.float32)
  assert np.array_equal(np.asarray(resize_frames(x, 9, 9, "tf1")), x)
  with pytest.raises(ValueError, match="resize mode"):
    resize_matrix(4, 8, "area")
