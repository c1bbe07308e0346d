"""benchmarks/long_video_windows.py tells clean windows from noise in the sample CLI's
long_*.mp4 files and writes the strip (a script, not a test; this keeps it from rotting)."""

import numpy as np
from PIL import Image

from benchmarks import long_video_windows
from videofusion_jax.data import video_io

WINDOW, OVERLAP = 4, 2  # 10 frames: windows start at 0, 2, 4, 6


def _long_video(seed):
  """A smooth gradient sliding 1 px a frame for 6 frames, then colour noise: windows 0
  and 1 are clean, windows 2 and 3 hold noise."""
  ramp = np.linspace(0, 255, 48)
  smooth = np.stack([np.broadcast_to(ramp[k : k + 16, None, None], (16, 16, 3)) for k in range(6)])
  noise = np.random.default_rng(seed).integers(0, 256, (4, 16, 16, 3))
  return np.concatenate([smooth, noise]).astype(np.uint8)


def test_noise_windows_show_as_a_larger_frame_change(tmp_path, capsys):
  for k in range(2):
    video_io.write_mp4(tmp_path / "samples" / f"long_00{k}.mp4", _long_video(k))
  strip = tmp_path / "strip.png"
  change = long_video_windows.main(
    [f"--workdir={tmp_path}", f"--window={WINDOW}", f"--overlap={OVERLAP}", f"--strip={strip}"]
  )
  assert len(change) == 4
  assert change[1] < 2 * change[0] and change[2] > 5 * change[0] and change[3] > 10 * change[0]
  out = capsys.readouterr().out
  assert out.startswith("2 videos of 10 frames, window 4, overlap 2:")
  assert "long_001.mp4:" in out
  # every 2nd frame of 2 videos, 16 px frames 1 px apart, shown 4x
  assert Image.open(strip).size == ((5 * 17 - 1) * 4, (2 * 17 - 1) * 4)
