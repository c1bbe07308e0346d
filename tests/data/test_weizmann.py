"""Weizmann content/motion mode: names -> ids, identity x action batches, grouped noise
in the train step. The data is a tiny fake Weizmann folder written here with PyAV."""

from types import SimpleNamespace

import av
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videofusion_jax import diffusion
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.weizmann import WeizmannFolder, make_grouped_dataset, parse_weizmann_name
from videofusion_jax.training.step import StepConfig, loss_fn

COLOURS = {"daria": (220, 40, 40), "ido": (40, 220, 40), "lena": (40, 40, 220)}
MOTION = {"jack": (0, 1), "run": (1, 0), "wave1": (0, -1), "wave2": (-1, 0)}
FILES = [
  "daria_jack.avi",
  "daria_run.mp4",
  "daria_wave1.avi",
  "ido_jack.mp4",
  "ido_run.avi",
  "ido_wave2.avi",
  "lena_jack.avi",
  "lena_run1.avi",
  "lena_run2.mp4",
  "lena_wave1.mp4",
  "lena_wave2.avi",
]


def _write(path, video, fps=25):
  """avi (MPEG-4 part 2, as the dataset's own files) or mp4 (H.264), through PyAV."""
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream("mpeg4" if path.suffix == ".avi" else "libx264", rate=fps)
    stream.width, stream.height = video.shape[2], video.shape[1]
    stream.pix_fmt = "yuv420p"
    stream.options = {"qscale": "1"} if path.suffix == ".avi" else {"crf": "1"}
    for frame in video:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _clip(person, action, frames=8, size=16):
  video = np.zeros((frames, size, size, 3), np.uint8)
  dy, dx = MOTION[action]
  for f in range(frames):
    y, x = 5 + dy * f // 2, 5 + dx * f // 2
    video[f, y : y + 6, x : x + 6] = COLOURS[person]
  return video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("weizmann")
  for name in FILES:
    person, action = parse_weizmann_name(name)
    _write(root / name, _clip(person, action))
  return root


@pytest.mark.parametrize(
  "name,expected",
  [
    ("daria_jack.avi", ("daria", "jack")),
    ("lena_run1.avi", ("lena", "run")),
    ("lena_skip2.avi", ("lena", "skip")),
    ("ido_wave2.avi", ("ido", "wave2")),
    ("Moshe_PJump.avi", ("moshe", "pjump")),
  ],
)
def test_names_parse_to_identity_and_action(name, expected):
  assert parse_weizmann_name(name) == expected


@pytest.mark.parametrize(
  "name", ["daria.avi", "daria_jack_2.avi", "1_jack.avi", "daria_.avi", "daria_2jack.avi"]
)
def test_bad_names_are_refused_by_name(name):
  with pytest.raises(ValueError, match=f"{name}: not a Weizmann Action name"):
    parse_weizmann_name(name)


def test_folder_gives_identity_and_action_ids(folder, tmp_path):
  ds = WeizmannFolder(str(folder), num_frames=4, image_size=8)
  assert ds.identities == ["daria", "ido", "lena"]
  assert ds.actions == ["jack", "run", "wave1", "wave2"]
  item = ds[FILES.index("lena_run2.mp4")]
  assert (int(item["identity"]), int(item["action"]), int(item["label"])) == (2, 1, 1)
  assert item["video"].shape == (4, 8, 8, 3)
  # The person's colour is in the clip: blue for lena.
  assert item["video"][..., 2].max() > 0.3 > item["video"][..., 0].max()
  (tmp_path / "a").mkdir()
  _write(tmp_path / "a" / "daria_jack.avi", _clip("daria", "jack"))
  _write(tmp_path / "a" / "outtake.mp4", _clip("daria", "jack"))
  with pytest.raises(ValueError, match="outtake.mp4"):
    WeizmannFolder(str(tmp_path / "a"), num_frames=4, image_size=8)
  with pytest.raises(ValueError, match="no 4 identities share 2 actions"):
    WeizmannFolder(str(folder), num_frames=4, image_size=8, group_identities=4)


def test_batches_are_blocks_of_identities_times_actions(folder):
  ds = WeizmannFolder(str(folder), num_frames=4, image_size=8)
  it = iter(make_dataset(ds, global_batch_size=8, seed=3))
  for _ in range(5):
    batch = next(it)
    assert batch["video"].shape == (8, 4, 8, 8, 3)
    for block in range(2):
      ids = batch["identity"][4 * block : 4 * block + 4]
      acts = batch["action"][4 * block : 4 * block + 4]
      pairs = set(zip(ids.tolist(), acts.tolist()))
      assert len(set(ids.tolist())) == 2 and len(set(acts.tolist())) == 2
      assert len(pairs) == 4  # every identity with every action of the block
    # Each clip shows its identity's colour.
    for video, ident in zip(batch["video"], batch["identity"]):
      colour = np.array(COLOURS[ds.identities[int(ident)]])
      channel = int(np.argmax(colour))
      assert video[..., channel].max() > 0.3
  # Deterministic and resumable; each process reads its own half of the same batch.
  again = iter(make_dataset(ds, global_batch_size=8, seed=3))
  first = next(again)
  state = again.get_state()
  second = next(again)
  resumed = iter(make_dataset(ds, global_batch_size=8, seed=3))
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)["video"], second["video"])
  halves = [
    next(
      iter(make_grouped_dataset(ds, global_batch_size=8, seed=3, process_index=p, process_count=2))
    )
    for p in (0, 1)
  ]
  np.testing.assert_array_equal(np.concatenate([h["identity"] for h in halves]), first["identity"])
  with pytest.raises(ValueError, match="batch_size=6 is not a multiple of.*= 4"):
    make_dataset(ds, global_batch_size=6, seed=0)


class _Recorder:
  """Stands in for the model in `loss_fn`: records z_t and t, predicts zero noise."""

  def __init__(self):
    self.seen = []

  def in_compute_dtype(self):
    return self

  def __call__(self, z_t, t, alphas_cumprod, **_):
    self.seen.append((z_t, t))
    return SimpleNamespace(eps=jnp.zeros_like(z_t))


def test_loss_fn_shares_noise_by_identity_and_action():
  schedule = diffusion.make_schedule("cosine", 1000)
  video = jnp.zeros((4, 4, 2, 2, 3))
  ident, action = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 0, 1])
  model = _Recorder()
  loss_fn(model, video, jax.random.key(0), schedule, StepConfig(lam=0.9), groups=(ident, action))
  z_t, t = model.seen[-1]
  eps = np.asarray(z_t / jnp.sqrt(1 - schedule.alphas_cumprod[t])[:, None, None, None, None])
  b = eps[:, diffusion.centre_index(4)]  # eps[c] = b
  r = (eps[:, 0] - np.sqrt(0.9) * b) / np.sqrt(0.1)  # frame 0's residual noise
  np.testing.assert_allclose(b[0], b[1], atol=1e-5)  # same identity
  np.testing.assert_allclose(r[0], r[2], atol=1e-4)  # same action
  assert np.abs(b[0] - b[2]).mean() > 0.3 and np.abs(r[0] - r[1]).mean() > 0.3
  # Without ids: the ordinary draw, the same as before this mode existed.
  loss_fn(model, video, jax.random.key(0), schedule, StepConfig(lam=0.9))
  z_plain, _ = model.seen[-1]
  keys = jax.random.split(jax.random.key(0), 4)
  expected = diffusion.sample_noise("decomposed", keys[1], keys[2], video.shape, 0.9)
  np.testing.assert_allclose(
    z_plain, diffusion.q_sample(video, t, expected, schedule.alphas_cumprod), atol=1e-6
  )
