"""grain pipeline: per-process shares, seeded epochs, exact resume from iterator state."""

import ml_collections
import numpy as np
import pytest

from videofusion_jax.checkpoint import Checkpoints
from videofusion_jax.data.pipeline import make_dataset
from videofusion_jax.data.synthetic import SyntheticShapes


class Indexed:
  """A source whose clip i is filled with the value i."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"video": np.full((2, 1, 1, 1), i, np.float32)}


def _ids(batch):
  return batch["video"][:, 0, 0, 0, 0].astype(int).tolist()


def test_processes_read_disjoint_shares():
  seen = []
  for p in range(2):
    it = iter(
      make_dataset(Indexed(8), global_batch_size=4, seed=0, process_index=p, process_count=2)
    )
    seen.append({i for _ in range(2) for i in _ids(next(it))})
  assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(8))


def test_epochs_are_reshuffled_and_kept_apart():
  it = iter(make_dataset(Indexed(6), global_batch_size=3, seed=1, process_index=0, process_count=1))
  epochs = [sorted(_ids(next(it)) + _ids(next(it))) for _ in range(2)]
  assert epochs == [list(range(6))] * 2


def test_iterator_state_resumes_at_the_exact_next_batch():
  make = lambda: iter(
    make_dataset(Indexed(10), global_batch_size=2, seed=2, process_index=0, process_count=1)
  )
  it = make()
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [_ids(next(it)) for _ in range(4)]
  it2 = make()
  it2.set_state(state)
  assert [_ids(next(it2)) for _ in range(4)] == expected


def test_batch_that_cannot_be_filled_is_named():
  with pytest.raises(ValueError, match="train.batch_size=3 does not divide over 2"):
    make_dataset(Indexed(10), global_batch_size=3, seed=0, process_index=0, process_count=2)
  with pytest.raises(ValueError, match="the data source holds no videos"):
    make_dataset(Indexed(0), global_batch_size=4, seed=0, process_index=0, process_count=1)


def test_fewer_videos_than_the_batch_fill_it_each_video_equally_often():
  # 3 videos, batch 8: each pass holds 3 copies of each (9 entries), so 8 passes give
  # 9 batches in which every video comes 24 times.
  it = iter(make_dataset(Indexed(3), global_batch_size=8, seed=4, process_index=0, process_count=1))
  ids = [_ids(next(it)) for _ in range(9)]
  assert all(len(b) == 8 for b in ids)
  flat = sum(ids, [])
  assert [flat.count(v) for v in range(3)] == [24, 24, 24]
  assert all(sorted(flat[k : k + 9]) == [0, 0, 0, 1, 1, 1, 2, 2, 2] for k in range(0, 72, 9))
  # Two processes, batch 8 (4 each) from 3 videos: each process reads full batches.
  for p in range(2):
    it = iter(
      make_dataset(Indexed(3), global_batch_size=8, seed=4, process_index=p, process_count=2)
    )
    assert [len(_ids(next(it))) for _ in range(3)] == [4, 4, 4]


def test_worker_process_gives_the_same_batches_and_its_state_checkpoints(tmp_path):
  """data.worker_count=1 (grain mp_prefetch, one child process) reads the same batches
  in the same order as the main process, and its iterator state round-trips through
  our orbax checkpoint to the exact next batch."""
  source = SyntheticShapes(num_clips=12, num_frames=2, image_size=4)
  make = lambda workers: iter(
    make_dataset(
      source, global_batch_size=2, seed=3, worker_count=workers, process_index=0, process_count=1
    )
  )
  inline = make(0)
  expected = [next(inline)["video"] for _ in range(5)]
  it = make(1)
  got = [next(it)["video"] for _ in range(2)]
  ckpt = Checkpoints(tmp_path)
  ckpt.save(
    2,
    {"w": np.zeros(2, np.float32)},
    {"w": np.zeros(2, np.float32)},
    it,
    ml_collections.ConfigDict({"seed": 0}),
  )
  ckpt.wait()
  got += [next(it)["video"] for _ in range(3)]
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b)
  ckpt.restore(2, data_iter=it)  # back to the saved position (one worker start less
  ckpt.close()  # than a fresh iterator)
  for b in expected[2:]:
    np.testing.assert_array_equal(next(it)["video"], b)
