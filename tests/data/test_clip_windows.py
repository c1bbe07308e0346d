"""Clip windows cut from longer videos: a new window every epoch, over the whole video,
the same after a resume, disjoint per process.

The material is real mp4 files written here with PyAV: a camera panning 2 pixels a frame
across a textured picture, so every frame is distinct and the frame a clip starts at is
recovered by matching its frames against the known pan.
"""

import numpy as np
import pytest
from PIL import Image

from videofusion_jax.data import video_io
from videofusion_jax.data.clip_cache_source import ClipCacheSource
from videofusion_jax.data.folders import VideoFolder, item_at_epoch
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.superres_pairs import LowResPairs
from videofusion_jax.data.weizmann import WeizmannFolder

HEIGHT, WIDTH, PAN = 40, 48, 2  # frames 48 wide x 40 high; 2 pixels a frame
NUM_FRAMES, STRIDE = 4, 3  # a clip spans (4 - 1) * 3 + 1 = 10 frames
SPAN = (NUM_FRAMES - 1) * STRIDE + 1
LENGTHS = {"a_long.mp4": 120, "b_mid.mp4": 30, "c_mid.mp4": 24, "d_short.mp4": 12}
LONG = "a_long.mp4"


def _textured_picture(height, width, seed=0):
  """A stand-in photograph: colour noise at four scales, smooth and fine detail both."""
  rng = np.random.default_rng(seed)
  picture = np.zeros((height, width, 3), np.float32)
  for cells, weight in ((4, 0.4), (12, 0.3), (40, 0.2), (width, 0.1)):
    coarse = rng.random((max(2, cells * height // width), cells, 3)) * 255
    layer = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    picture += weight * np.asarray(layer, np.float32)
  return picture.clip(0, 255).astype(np.uint8)


def _pan(num_frames):
  """(num_frames, HEIGHT, WIDTH, 3) uint8: frame k shows columns PAN*k .. PAN*k + WIDTH."""
  picture = _textured_picture(HEIGHT, WIDTH + PAN * (max(LENGTHS.values()) - 1))
  return np.stack([picture[:, PAN * k : PAN * k + WIDTH] for k in range(num_frames)])


# What a clip frame of pan frame k looks like: the short side is already 40 = image_size,
# so the source only crops the centre 40 x 40.
REFERENCE = _pan(max(LENGTHS.values()))[:, :, (WIDTH - HEIGHT) // 2 : (WIDTH + HEIGHT) // 2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("pans")
  for name, length in LENGTHS.items():
    video_io.write_mp4(root / name, _pan(length))
  return root


def _start_of(video, num_video_frames):
  """The pan frame a clip (N, 40, 40, 3) in [-1, 1] starts at; checks that its frames
  are consecutive pan frames STRIDE apart, matched closely."""
  frames = video_io.to_uint8(video).astype(np.float32)
  reference = REFERENCE[:num_video_frames].astype(np.float32)
  error = np.abs(frames[:, None] - reference[None]).mean(axis=(2, 3, 4))
  matched = error.argmin(axis=1)
  assert error.min(axis=1).max() < 4.0, "a clip frame matches no frame of the pan"
  np.testing.assert_array_equal(matched, matched[0] + STRIDE * np.arange(len(frames)))
  return int(matched[0])


def _folder(root, *, random_start=True, seed=0):
  return VideoFolder(
    str(root),
    num_frames=NUM_FRAMES,
    image_size=HEIGHT,
    frame_stride=STRIDE,
    random_start=random_start,
    seed=seed,
  )


def _iterator(source, *, batch=4, seed=0, process_index=0, process_count=1):
  return iter(
    make_dataset(
      source,
      global_batch_size=batch,
      seed=seed,
      process_index=process_index,
      process_count=process_count,
    )
  )


def _starts_by_file(batch):
  """{file name: the pan frame its clip starts at} for the clips of one batch."""
  return {
    str(key): _start_of(video, LENGTHS[str(key)])
    for key, video in zip(batch["key"], batch["video"])
  }


def test_each_epoch_draws_new_windows_over_the_whole_video(videos):
  # A batch of 4 out of 4 files is one epoch.
  it = _iterator(_folder(videos))
  epochs = [_starts_by_file(next(it)) for _ in range(30)]
  assert all(sorted(e) == sorted(LENGTHS) for e in epochs)
  long_starts = [e[LONG] for e in epochs]
  assert len(set(long_starts[:3])) == 3, long_starts[:3]  # epochs 0, 1, 2 differ
  last = LENGTHS[LONG] - SPAN  # 110: the last start that fits
  assert 0 <= min(long_starts) <= 20 and 90 <= max(long_starts) <= last, long_starts
  assert len(set(long_starts)) >= 20, long_starts
  # A 12-frame file has starts 0, 1, 2: all three come up, the last one included.
  assert {e["d_short.mp4"] for e in epochs} == {0, 1, 2}


def test_centre_window_stays_fixed_across_epochs(videos):
  it = _iterator(_folder(videos, random_start=False))
  for _ in range(3):
    starts = _starts_by_file(next(it))
    assert starts == {name: (n - SPAN) // 2 for name, n in LENGTHS.items()}


def test_resume_mid_epoch_gives_the_same_batches_bit_for_bit(videos):
  # Batches of 3 out of 4 files straddle epochs; the state is saved inside epoch 2.
  source = _folder(videos, seed=5)
  it = _iterator(source, batch=3, seed=5)
  served = [next(it) for _ in range(3)]
  state = it.get_state()
  expected = [next(it) for _ in range(5)]
  resumed = _iterator(source, batch=3, seed=5)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["video"], want["video"])
    np.testing.assert_array_equal(got["key"], want["key"])
  # Not a replay: the long file's windows move between the epochs served.
  long_starts = {
    starts[LONG] for b in served + expected for starts in [_starts_by_file(b)] if LONG in starts
  }
  assert len(long_starts) >= 3, long_starts


def test_processes_read_disjoint_files_with_moving_windows(videos):
  source = _folder(videos)
  seen, long_starts = [], []
  for p in range(2):  # 2 files per process, 1 per batch: 2 batches an epoch
    it = _iterator(source, batch=2, process_index=p, process_count=2)
    batches = [_starts_by_file(next(it)) for _ in range(8)]
    seen.append({name for b in batches for name in b})
    long_starts += [b[LONG] for b in batches if LONG in b]
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(LENGTHS)
  assert len(long_starts) == 4 and len(set(long_starts)) >= 3, long_starts


def test_wrapped_sources_pass_the_epoch_through(videos, tmp_path):
  folder = _folder(videos)
  long = folder.paths.index(videos / LONG)
  keys = [folder.entries(i)["key"] for i in range(len(folder))]
  cache = tmp_path / "cache.npz"
  np.savez(
    cache,
    image_embeds=np.zeros((len(keys), 8), np.float32),
    keys=np.array(keys),
    captions=np.array([""] * len(keys)),
  )
  for wrapped in (LowResPairs(folder, 20), ClipCacheSource(folder, cache, name="folder")):
    starts = []
    for epoch in range(3):
      item = item_at_epoch(wrapped, long, epoch)
      np.testing.assert_array_equal(item["video"], folder.at_epoch(long, epoch)["video"])
      starts.append(_start_of(item["video"], LENGTHS[LONG]))
    assert len(set(starts)) == 3, (type(wrapped).__name__, starts)


def test_weizmann_batches_draw_new_windows(tmp_path):
  # Two people x two actions, each file the same 40-frame pan; every batch holds all four.
  for name in ("ann_jack.mp4", "ann_run.mp4", "bob_jack.mp4", "bob_run.mp4"):
    video_io.write_mp4(tmp_path / name, _pan(40))
  source = WeizmannFolder(
    str(tmp_path), num_frames=NUM_FRAMES, image_size=HEIGHT, frame_stride=STRIDE, random_start=True
  )
  it = _iterator(source)
  starts = {}
  for _ in range(4):
    batch = next(it)
    for ident, action, video in zip(batch["identity"], batch["action"], batch["video"]):
      starts.setdefault((int(ident), int(action)), []).append(_start_of(video, 40))
  assert len(starts) == 4
  assert all(len(set(s)) >= 2 for s in starts.values()), starts


@pytest.fixture(scope="module")
def three_videos(tmp_path_factory):
  """Fewer videos than the batch: the long pan and two short ones."""
  root = tmp_path_factory.mktemp("three")
  for name in ("a_long.mp4", "b_mid.mp4", "d_short.mp4"):
    video_io.write_mp4(root / name, _pan(LENGTHS[name]))
  return root


def test_three_videos_fill_batches_of_eight_with_a_window_per_copy(three_videos):
  # Batch 8 from 3 videos: a pass holds 3 copies of each (9 entries), each copy read as
  # an epoch of its own. Batches are full, every video comes equally often, and the
  # copies of a video in one pass hold windows of their own.
  source = _folder(three_videos, seed=3)
  it = _iterator(source, batch=8, seed=3)
  batches = [next(it) for _ in range(9)]  # 72 clips: 8 passes of 9
  assert all(len(b["key"]) == 8 for b in batches)
  clips = [
    (str(k), _start_of(v, LENGTHS[str(k)])) for b in batches for k, v in zip(b["key"], b["video"])
  ]
  names = [name for name, _ in clips]
  assert [names.count(n) for n in ("a_long.mp4", "b_mid.mp4", "d_short.mp4")] == [24] * 3
  for first in range(0, 72, 9):
    long_starts = [s for name, s in clips[first : first + 9] if name == LONG]
    assert len(long_starts) == 3 and len(set(long_starts)) == 3, (first, long_starts)
  all_long = [s for name, s in clips if name == LONG]
  assert len(set(all_long)) >= 16, all_long  # 24 windows over 111 starts


def test_three_videos_resume_bit_for_bit_mid_pass(three_videos):
  source = _folder(three_videos, seed=3)
  it = _iterator(source, batch=8, seed=3)
  next(it)
  state = it.get_state()  # 8 of the first pass's 9 entries
  expected = [next(it) for _ in range(3)]
  resumed = _iterator(source, batch=8, seed=3)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got["video"], want["video"])
    np.testing.assert_array_equal(got["key"], want["key"])
