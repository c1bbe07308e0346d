"""WebVid: its CSV joined with the videos present locally, captions kept per clip."""

import logging

import numpy as np
import pytest

from videofusion_jax.data import video_io
from videofusion_jax.data.webvid import WebVidSource, read_webvid_csv

HEADER = "videoid,contentUrl,duration,page_dir,name\n"


def _video(colour):
  frames = np.zeros((6, 24, 32, 3), np.uint8)
  frames[..., :] = colour
  return frames


@pytest.fixture
def webvid(tmp_path):
  videos = tmp_path / "videos"
  video_io.write_mp4(videos / "001_050" / "11.mp4", _video((200, 30, 30)))
  video_io.write_mp4(videos / "051_100" / "12.mp4", _video((30, 30, 200)))
  rows = [
    '11,https://x/11.mp4,PT00H00M10S,001_050,"Cat, jumping — über the sofa 🐈"',
    "12,https://x/12.mp4,PT00H00M05S,051_100,Aerial view of a lake",
    "13,https://x/13.mp4,PT00H00M07S,051_100,never downloaded",
    ",https://x/none.mp4,PT00H00M07S,051_100,a row without an id",
    "14,https://x/14.mp4,PT00H00M07S,051_100,too,many,fields",
  ]
  csv = tmp_path / "results_2M_val.csv"
  csv.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
  return csv, videos


def test_rows_with_videos_are_read_with_unicode_captions_and_the_rest_counted(webvid):
  csv, videos = webvid
  rows = read_webvid_csv(csv, videos)
  assert rows.keys == ["11", "12"]
  assert rows.captions == ["Cat, jumping — über the sofa 🐈", "Aerial view of a lake"]
  assert (rows.absent, rows.bad) == (1, 2)
  assert rows.first_absent.endswith("051_100/13.mp4") and rows.first_bad == "line 5"


def test_source_yields_clips_with_caption_and_key(webvid, caplog):
  csv, videos = webvid
  with caplog.at_level(logging.WARNING):
    source = WebVidSource(str(videos), num_frames=4, image_size=16, csv_path=str(csv))
  assert "2 of 5 rows used; 1 skipped for an absent video" in caplog.text
  assert len(source) == 2
  item = source[1]
  assert item["video"].shape == (4, 16, 16, 3) and item["key"] == "12"
  assert item["caption"] == "Aerial view of a lake"
  assert item["video"][..., 2].mean() > item["video"][..., 0].mean() + 1.0  # blue clip


def test_bad_csvs_and_folders_are_named(webvid, tmp_path):
  csv, videos = webvid
  bad = tmp_path / "bad.csv"
  bad.write_text("id,caption\n1,x\n")
  with pytest.raises(
    ValueError,
    match=r"bad.csv lacks the column\(s\) \['videoid', "
    r"'name'\]",
  ):
    read_webvid_csv(bad, videos)
  with pytest.raises(
    FileNotFoundError,
    match=r"data.webvid_csv=.*nothere.csv does not "
    r"exist",
  ):
    read_webvid_csv(tmp_path / "nothere.csv", videos)
  with pytest.raises(ValueError, match=r"names the column 'shard'"):
    read_webvid_csv(csv, videos, template="{shard}/{videoid}.mp4")
  empty = tmp_path / "empty_videos"
  empty.mkdir()
  with pytest.raises(
    ValueError,
    match=r"none of the 5 rows of .* has its video under "
    r"data.path=.*empty_videos",
  ):
    WebVidSource(str(empty), num_frames=4, image_size=16, csv_path=str(csv))
