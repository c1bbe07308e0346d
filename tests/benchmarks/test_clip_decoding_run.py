"""benchmarks/clip_decoding.py runs at a tiny size and reports what it measures: a full
decode's cost grows with the file, a window's held bytes do not (a script, not a test;
this keeps it from rotting)."""

from benchmarks import clip_decoding


def test_clip_decoding_compares_full_and_window_decodes(tmp_path):
  result, table = clip_decoding.run(
    short_s=2,
    long_s=12,
    height=36,
    rate=24,
    modes=["full", "window"],
    window_clips=3,
    full_clips=1,
    cache_dir=tmp_path,
  )
  full, window = result["modes"]["full"], result["modes"]["window"]
  assert full["short"]["frames_decoded_per_clip"] == 48  # every frame of 2 s
  assert full["long"]["frames_decoded_per_clip"] == 288  # and of 12 s
  assert full["ratio_long_short"]["bytes_decoded_per_clip"] == 6.0
  assert window["ratio_long_short"]["peak_bytes_held"] == 1.0
  assert window["long"]["peak_bytes_held"] == clip_decoding.NUM_FRAMES * 36 * 64 * 3
  assert window["long"]["frames_decoded_per_clip"] < 288
  assert "window: long/short" in table and result["commit"]
  # The files are made once: a second run finds them.
  again, _ = clip_decoding.run(
    short_s=2,
    long_s=12,
    height=36,
    rate=24,
    modes=["window"],
    window_clips=1,
    full_clips=0,
    cache_dir=tmp_path,
  )
  assert list(again["modes"]) == ["window"]
