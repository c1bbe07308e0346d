"""benchmarks/long_video_overlap.py runs every method on a checkpoint and reports what
it says (a script, not a test; this keeps it from rotting). Slow: it trains the tiny
model 2 steps and compiles a window step per method."""

import pytest
from PIL import Image

from benchmarks import long_video_overlap
from tests.test_faults import tiny_config
from videofusion_jax.training.loop import train


@pytest.mark.slow
def test_every_method_makes_a_long_video_and_its_numbers(tmp_path, capsys):
  workdir = tmp_path / "run"
  train(tiny_config(2), str(workdir))
  methods = "plain,recentre"
  rows = long_video_overlap.main(
    [
      f"--workdir={workdir}",
      "--config_setting=setting=tiny",
      "--overlaps=3",
      "--windows=3",
      f"--methods={methods}",
      "--num_videos=2",
      f"--strip={tmp_path}",
    ]
  )
  assert [r["method"] for r in rows] == methods.split(",")
  for row in rows:  # window 4, overlap 3: 3 windows are 6 frames
    assert row["frames"] == 6 and len(row["change"]) == 3 and len(row["lags"]) == 3
  assert " recentre: change " in capsys.readouterr().out
  # every 2nd frame of 2 videos of 16 px frames, 1 px apart, shown 4x
  assert Image.open(tmp_path / "overlap3_recentre.png").size == ((3 * 17 - 1) * 4, (2 * 17 - 1) * 4)
  with pytest.raises(SystemExit, match="--methods: 'fast'; expected plain or recentre"):
    long_video_overlap.main([f"--workdir={workdir}", "--methods=recentre,fast"])
