"""Only a clip's window is decoded, frame-exact against a full decode; `data.fps` picks
frames by timestamp, so clips last the same from files of any frame rate.

The material is footage.py's: skimage photographs filmed along a camera path, encoded
with x264 (mp4, mkv), mpeg4 (avi, also with B-frames) and VP9/VP8 (webm) at 24, 25 and
29.97 fps, at odd sizes, with and without a scene cut. Decoding cost is what the reader
reports (frames out of the decoder, RGB array bytes held), never wall time.
"""

from fractions import Fraction

import av
import numpy as np
import pytest

from tests.data import footage
from videofusion_jax.data import video_io
from videofusion_jax.data.folders import VideoFolder, resize_and_crop
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.window_reader import VideoReader

# name -> (container kind, rate, (h, w), gop, B-frames, scene cut at)
FILES = {
  "h264.mp4": ("mp4", 24, (43, 57), 12, None, None),
  "cut.mp4": ("mp4", 25, (36, 64), None, None, 70),  # keyframes: 0 and the cut
  "mpeg4.avi": ("avi", 25, (48, 64), 10, None, None),
  "bframes.avi": ("avi", footage.NTSC, (48, 64), 9, 2, None),  # decode order != display
  "vp9.webm": ("webm", footage.NTSC, (45, 80), 15, None, None),
  "vp8.webm": ("vp8.webm", 24, (40, 52), 15, None, None),
  "h264.mkv": ("mkv", 25, (37, 49), 20, None, None),
}
LENGTH = 150


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  root = tmp_path_factory.mktemp("footage")
  for name, (kind, rate, size, gop, bframes, cut) in FILES.items():
    frames = footage.film(LENGTH, rate, size, cut_at=cut)
    footage.encode(root / name, frames, rate, kind, gop=gop, bframes=bframes)
  return root


@pytest.mark.parametrize("name", sorted(FILES))
def test_seeking_gives_the_pixels_of_a_full_decode(files, name):
  kind, rate, _, gop, _, cut = FILES[name]
  full = video_io.read_video(files / name)
  with VideoReader(files / name) as video:
    assert video.num_frames == len(full) == LENGTH
    # webm and mkv (matroska) report no frame count: their packets were counted.
    assert video.counted == name.endswith((".webm", ".mkv"))
    assert video.rate == Fraction(rate)
  for start in [*range(0, LENGTH - 7, 5), LENGTH - 7]:
    indices = [start, start + 2, start + 4, start + 6]
    with VideoReader(files / name) as video:
      window = video.read(indices)
    np.testing.assert_array_equal(
      np.stack(window.frames), full[indices], err_msg=f"{name} frames {indices}"
    )
    for i, t in zip(indices, window.times):  # webm keeps milliseconds
      assert abs(t - Fraction(i) / Fraction(rate)) <= Fraction(1, 1000), (name, i, t)
    assert window.peak_bytes == 4 * full[0].nbytes
    # Decoded from the keyframe before the window, never from the start of the file; an
    # AVI with B-frames indexes keyframes by decode time, and may seek a GOP further back.
    keyframe_gap = gop or (start - cut if start >= cut else start)
    limit = keyframe_gap * (2 if name == "bframes.avi" else 1) + 7
    assert window.decoded <= limit, (start, window.decoded, limit)
  # One reader, reading windows back and forth, seeks each time.
  with VideoReader(files / name) as video:
    for indices in ([100, 101], [3, 4], [140, 149], [0]):
      np.testing.assert_array_equal(np.stack(video.read(indices).frames), full[indices])


def _nearest(times, target):
  """Index of the time nearest target, the earlier on a tie."""
  return min(range(len(times)), key=lambda i: (abs(times[i] - target), i))


def _timestamps(path):
  """Seconds of every frame of a full decode, as the container stores them."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    time_base = Fraction(stream.time_base)  # read while the container is open
    pts = [frame.pts for frame in container.decode(stream)]
  return [(p - pts[0]) * time_base for p in pts]


@pytest.mark.parametrize("name", ["h264.mp4", "bframes.avi", "vp9.webm"])
@pytest.mark.parametrize("fps", [8, 40])  # fewer frames than the file's rate, and more
def test_frames_by_timestamp_are_the_nearest_frames_of_a_full_decode(files, name, fps):
  _, rate, *_ = FILES[name]
  full = video_io.read_video(files / name)
  times = _timestamps(files / name)  # webm's are rounded to milliseconds
  for first in (0, 33, 97):
    with VideoReader(files / name) as video:
      window = video.read_at_times(first, Fraction(1, fps), 6)
    expected = [_nearest(times, times[first] + Fraction(k, fps)) for k in range(6)]
    np.testing.assert_array_equal(
      np.stack(window.frames), full[expected], err_msg=f"{name} from {first}: frames {expected}"
    )
    for k, t in enumerate(window.times):  # within half a source frame of each target
      assert abs(t - window.times[0] - Fraction(k, fps)) <= 1 / (2 * Fraction(rate)) + Fraction(
        1, 1000
      )


def _matches_time(frame, t, rate, picture, size):
  """The frame shows the camera at time t better than one source frame earlier or later."""
  errors = []
  for dt in (-1, 0, 1):
    view = resize_and_crop(
      footage.render(t + Fraction(dt) / Fraction(rate), size, picture), min(size)
    )
    errors.append(np.abs(frame.astype(np.float32) - view).mean())
  return errors[1] < min(errors[0], errors[2]), errors


def test_fps_gives_clips_of_one_duration_from_24_25_and_30_fps_files(tmp_path):
  size, picture = (48, 64), footage.photograph()
  rates = {"a24.mp4": 24, "b25.avi": 25, "c2997.webm": footage.NTSC, "d30.mp4": 30}
  for name, rate in rates.items():
    footage.encode(
      tmp_path / name, footage.film(round(4 * rate), rate, size), rate, name.split(".")[1], gop=12
    )
  source = VideoFolder(
    str(tmp_path), num_frames=6, image_size=48, fps=7.5, random_start=True, seed=1
  )
  durations = []
  for epoch in range(3):
    for index, path in enumerate(source.paths):
      rate = Fraction(rates[path.name])
      window = source.read_clip(index, epoch)
      targets = [window.times[0] + Fraction(2 * k, 15) for k in range(6)]
      for frame, t, target in zip(window.frames, window.times, targets):
        assert abs(t - target) <= 1 / (2 * rate) + Fraction(1, 1000), (path.name, t, target)
        ok, errors = _matches_time(frame, t, rate, picture, size)
        assert ok, (path.name, float(t), errors)  # the pixels are the time's
      durations.append(window.times[-1] - window.times[0])
  # 6 frames at 7.5 fps: 5 gaps of 2/15 s = 0.667 s, to within half a frame each end.
  assert all(abs(d - Fraction(2, 3)) <= Fraction(1, 24) for d in durations), durations
  assert max(durations) - min(durations) <= Fraction(1, 24)


def test_fps_skips_files_too_short_and_frame_folders_by_name(tmp_path, caplog):
  size = (36, 48)
  footage.encode(tmp_path / "long.mp4", footage.film(60, 25, size), 25)  # 2.4 s
  footage.encode(tmp_path / "short.mp4", footage.film(25, 25, size), 25)  # 1.0 s
  for i, frame in enumerate(footage.film(60, 25, size)):
    video_io.write_png(tmp_path / "frames" / f"{i:04d}.png", frame)
  source = VideoFolder(str(tmp_path), num_frames=16, image_size=36, fps=8)  # 2 s clips
  items = [source[i] for i in range(len(source))]
  assert [it["key"] for it in items] == ["long.mp4"] * 3
  assert {p.name for p in source.skipped} == {"frames", "short.mp4"}
  with pytest.raises(ValueError, match=r"short.mp4 lasts 1.00 s .*needs 2.00 s"):
    source.clip(source.paths.index(tmp_path / "short.mp4"))
  with pytest.raises(ValueError, match="frames is a frame folder: its frames have no timestamps"):
    source.clip(source.paths.index(tmp_path / "frames"))


def test_fps_resume_mid_epoch_gives_the_same_batches_bit_for_bit(tmp_path):
  for name, rate in (("a.mp4", 25), ("b.webm", footage.NTSC), ("c.avi", 24)):
    footage.encode(
      tmp_path / name, footage.film(90, rate, (36, 48)), rate, name.split(".")[1], gop=10
    )
  source = VideoFolder(str(tmp_path), num_frames=4, image_size=36, fps=6, random_start=True, seed=3)

  def batches():
    return iter(make_dataset(source, global_batch_size=2, seed=3, process_index=0, process_count=1))

  it = batches()
  served = [next(it) for _ in range(2)]  # 3 files, 2 a batch: inside epoch 1
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  resumed = batches()
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["video"], want["video"])
    np.testing.assert_array_equal(got["key"], want["key"])
  assert len({b["video"].tobytes() for b in served + expected}) == 6


def test_decoded_frames_and_memory_per_clip_do_not_grow_with_the_file_length(tmp_path):
  # The same footage 10 s and 100 s long (25 fps, a keyframe every 12 frames).
  size, gop = (36, 48), 12
  lengths = {"short": 250, "long": 2500}
  for name, n in lengths.items():
    footage.encode(tmp_path / name / "v.mp4", footage.film(n, 25, size), 25, gop=gop)
  per_clip = {}
  for name in lengths:
    for fps in (None, 10.0):
      source = VideoFolder(
        str(tmp_path / name),
        num_frames=4,
        image_size=36,
        frame_stride=3,
        fps=fps,
        random_start=True,
      )
      decoded = [source.read_clip(0, epoch).decoded for epoch in range(12)]
      stats = source.decode_stats
      assert stats.clips == 12 and stats.decoded_frames == sum(decoded)
      assert stats.decoded_bytes == sum(decoded) * size[0] * size[1] * 3
      assert stats.peak_bytes == 4 * size[0] * size[1] * 3  # the clip's frames only
      per_clip[name, fps] = max(decoded)
  span = 3 * 3 + 1  # stride 3; at 10 fps from 25: 4 frames span 8
  for key, most in per_clip.items():
    assert most <= gop + span, (key, most)  # from the keyframe before the window
  # A full decode would have produced 250 and 2500 frames per clip.
  assert per_clip["long", None] < lengths["short"] / 10


def test_frame_folders_open_only_the_windows_images(tmp_path):
  frames = footage.film(40, 25, (36, 48))
  for i, frame in enumerate(frames):
    video_io.write_png(tmp_path / "clip" / f"{i:04d}.png", frame)
  (tmp_path / "clip" / "0000.png").write_bytes(b"not a png")  # outside the centre window
  source = VideoFolder(str(tmp_path), num_frames=4, image_size=36, frame_stride=2)
  window = source.read_clip(0)
  start = (40 - 7) // 2
  expected = [resize_and_crop(f, 36) for f in frames[start : start + 7 : 2]]
  np.testing.assert_array_equal(window.frames, np.stack(expected))
  assert window.decoded == 4 and source.skipped == set()
