"""`train()` end to end on Weizmann-layout data: a tiny fake `<person>_<action>.mp4`
folder, configs/weizmann.py shrunk, two steps. The identity x action batches must reach
the train step (so its noise is grouped), and the loop must log and checkpoint them."""

import json

import numpy as np
import pytest

from configs import demo, weizmann
from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data import video_io
from videofusion_jax.data.weizmann import parse_weizmann_name
from videofusion_jax.training import loop

COLOURS = {"daria": (220, 40, 40), "ido": (40, 220, 40), "lena": (40, 40, 220)}
MOTION = {"jack": (1, 0), "run": (0, 1)}
FILES = [
  "daria_jack.mp4",
  "daria_run1.mp4",
  "daria_run2.mp4",
  "ido_jack.mp4",
  "ido_run.mp4",
  "lena_jack.mp4",
  "lena_run.mp4",
]


def _clip(person, action, frames=8, size=16):
  """A square of the person's colour moving the action's way."""
  video = np.zeros((frames, size, size, 3), np.uint8)
  dy, dx = MOTION[action]
  for f in range(frames):
    y, x = 4 + dy * f, 4 + dx * f
    video[f, y : y + 5, x : x + 5] = COLOURS[person]
  return video


def tiny_weizmann_config(path):
  config = weizmann.get_config(path)
  tiny = demo.get_config()
  config.model.base = tiny.model.base
  config.model.residual = tiny.model.residual
  config.data.num_frames = 4
  config.data.image_size = 16
  config.train.num_steps = 2
  config.train.batch_size = 4  # one block of 2 people x 2 actions
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.train.sample_every = 0
  config.train.tensorboard = False
  config.optim.warmup_steps = 1
  return config


@pytest.mark.slow  # a whole train() run (~30 s)
def test_two_train_steps_on_identity_action_batches(tmp_path, monkeypatch):
  for name in FILES:
    video_io.write_mp4(tmp_path / "weizmann" / name, _clip(*parse_weizmann_name(name)))
  seen = []
  real = loop.make_train_step

  def recording(*args, **kwargs):
    step = real(*args, **kwargs)

    def wrapped(state, ema, batch, key, schedule):
      seen.append({k: np.asarray(v) for k, v in batch.items() if k != "video"})
      seen[-1]["video_shape"] = tuple(batch["video"].shape)
      return step(state, ema, batch, key, schedule)

    return wrapped

  monkeypatch.setattr(loop, "make_train_step", recording)
  config = tiny_weizmann_config(str(tmp_path / "weizmann"))
  assert config.diffusion.lam == 0.9
  workdir = tmp_path / "run"
  last = loop.train(config, str(workdir))

  # The step saw both batches with their ids: a 2 x 2 identity x action block each.
  assert len(seen) == 2
  for batch in seen:
    assert batch["video_shape"] == (4, 4, 16, 16, 3)
    ids, acts = batch["identity"].tolist(), batch["action"].tolist()
    assert len(set(ids)) == 2 and len(set(acts)) == 2 and len(set(zip(ids, acts))) == 4
    assert ids[0] == ids[1] and acts[0] == acts[2]  # identity-major blocks
    assert 0 <= min(ids) and max(ids) < 3 and set(acts) == {0, 1}  # jack, run
  # Logged, finite, checkpointed with the data position of the grouped dataset.
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [1, 2]
  for line in lines:
    for key in ("loss", "loss_centre", "loss_residual"):
      assert np.isfinite(line[key]) and line[key] > 0, (key, line[key])
  assert last["loss"] == lines[-1]["loss"]
  assert Checkpoints(workdir).latest_step() == 2
  data_state = list((workdir / "checkpoints" / "2").glob("data*"))
  assert data_state, sorted(p.name for p in (workdir / "checkpoints" / "2").iterdir())
