"""Inline notebook videos: the mp4 decodes back to the enlarged frames, the HTML holds it."""

import base64
import io
import re

import av
import numpy as np
import pytest

from videofusion_jax.sampling import display


def _decode(data: bytes):
  with av.open(io.BytesIO(data)) as container:
    stream = container.streams.video[0]
    frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    return frames, stream.codec_context.name, stream.codec_context.pix_fmt


def _blocks(n=6, h=5, w=7, seed=0):
  """A video of flat colour blocks that change every frame (uint8 (N, H, W, 3))."""
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_mp4_is_browser_h264_and_decodes_to_the_enlarged_frames():
  video = _blocks()
  frames, codec, pix_fmt = _decode(display.mp4_bytes(video, fps=4, scale=8))
  assert (codec, pix_fmt) == ("h264", "yuv420p")
  # 5x7 pixels at 8x -> 40x56 (already even); every frame kept, in order.
  assert frames.shape == (6, 40, 56, 3)
  want = np.repeat(np.repeat(video, 8, axis=1), 8, axis=2).astype(np.float32)
  # Lossy yuv420p: block interiors close, the mean error small, and no frame swapped.
  err = np.abs(frames.astype(np.float32) - want)
  assert err[:, 2:-2:8, 2:-2:8].mean() < 6, err.mean()
  per_frame = [
    [np.abs(frames[i].astype(np.float32) - want[j]).mean() for j in range(6)] for i in range(6)
  ]
  assert (np.argmin(per_frame, axis=1) == np.arange(6)).all()


def test_odd_sides_are_padded_and_small_videos_enlarged_to_min_side():
  assert display.default_scale(16, 16) == 8 and display.default_scale(200, 300) == 1
  assert display.default_scale(5, 7) == 26  # ceil(128 / 5)
  frames, _, _ = _decode(display.mp4_bytes(_blocks(n=3), scale=3))
  assert frames.shape == (3, 16, 22, 3)  # 15x21 -> padded to even
  # The padding row is black (up to the colour that yuv420p's 2x2 chroma bleeds into it).
  assert frames[:, -1].mean() < 30 < 100 < frames[:, :-1].mean()


def test_float_videos_in_minus_one_one_map_like_saved_videos():
  video = np.full((2, 4, 4, 3), -1.0, np.float32)
  video[:, :, :, 0] = 1.0  # pure red
  frames, _, _ = _decode(display.mp4_bytes(video, scale=16))
  assert np.abs(frames[..., 0].astype(int) - 255).max() < 12
  assert frames[..., 1:].max() < 12


def test_html_table_holds_one_playable_video_per_input_in_rows():
  videos = np.stack([_blocks(n=4, h=4, w=4, seed=s) for s in range(5)])
  page = display.video_html(videos, titles=[f"v<{i}>" for i in range(5)], columns=2, fps=8, scale=4)
  assert page.count("<tr>") == 3 and page.count("<video") == 5
  assert "v&lt;3&gt;" in page  # titles escaped
  payloads = re.findall(r'src="data:video/mp4;base64,([^"]+)"', page)
  assert len(payloads) == 5
  for i, payload in enumerate(payloads):
    frames, _, _ = _decode(base64.b64decode(payload))
    want = np.repeat(np.repeat(videos[i], 4, axis=1), 4, axis=2)
    assert frames.shape == (4, 16, 16, 3)
    assert np.abs(frames.astype(float) - want).mean() < 12


@pytest.mark.parametrize(
  "bad, match",
  [
    (np.zeros((4, 8, 8)), r"shape \(4, 8, 8\)"),
    (np.zeros((1, 4, 8, 8, 2)), r"C in \(1, 3\)"),
    (np.zeros((4, 8, 8, 3), np.int64), "dtype int64"),
  ],
)
def test_bad_videos_are_named(bad, match):
  with pytest.raises(ValueError, match=match):
    display.mp4_bytes(bad)


def test_titles_must_match_the_videos():
  with pytest.raises(ValueError, match="2 titles for 3 videos"):
    display.video_html(np.zeros((3, 2, 4, 4, 3), np.uint8), titles=["a", "b"])
