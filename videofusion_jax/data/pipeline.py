"""grain input pipeline: a random-access clip source -> shuffled, batched numpy dicts.

Each process reads only its share of the source (`ds[index::count]`); shuffling is
seeded and re-drawn every epoch (shuffle, then repeat, keeps epochs apart). Item p of
the repeated stream is read as epoch p // (clips per process): sources that cut
windows from longer videos draw a new window each epoch (`folders.item_at_epoch`).
A source with fewer videos than the batch is read several times per pass
(`passes_per_epoch`), each time as its own epoch, so a batch holds several windows of
one video. Everything is a function of the seed and the position, so the iterator's
state is a small dict that checkpoints with the model, and a resumed run continues with
exactly the next batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import jax
from absl import flags

from videofusion_jax.data.folders import item_at_epoch
from videofusion_jax.data.weizmann import WeizmannFolder, make_grouped_dataset


@dataclasses.dataclass(frozen=True)
class _ReadAtEpoch:
  """(position p in the repeated stream, entry e) -> video e % num_videos as read in
  epoch (p // entries_per_epoch) * passes + e // num_videos; a module-level class so
  worker processes can unpickle it.

  With one pass (a source at least as large as the batch) entry e is video e, read in
  epoch p // entries_per_epoch. With several, copy k of a video in pass P is read as
  epoch P * passes + k: every copy has an epoch of its own, hence a window of its own.
  """

  source: Sequence[dict[str, Any]]
  clips_per_epoch: int  # entries of this process per pass over them
  num_videos: int = 0  # 0: len(source)
  passes: int = 1  # copies of each video per pass (passes_per_epoch)

  def __call__(self, position: int, entry: int) -> dict:
    num_videos = self.num_videos or len(self.source)
    epoch = (position // self.clips_per_epoch) * self.passes + int(entry) // num_videos
    return item_at_epoch(self.source, int(entry) % num_videos, epoch)


def passes_per_epoch(num_videos: int, global_batch_size: int) -> int:
  """How many copies of each video one pass over the data holds: 1, or enough that a
  source smaller than the batch fills it (3 videos, batch 8: 3 copies, 9 entries).

  Why copies and not sampling with replacement: each copy is read as an epoch of its
  own, so its window is drawn from (seed, epoch, index) like any other epoch's, and the
  copies of a video in one batch hold different windows (with replacement, a video drawn
  twice in one epoch gets the same window twice); every video is still seen equally
  often; and the stream stays a function of (seed, position), so a resume is bitwise. A
  source at least as large as the batch keeps one pass: its batches are what they were.
  """
  return max(1, -(-global_batch_size // num_videos))


def make_dataset(
  source: Sequence[dict[str, Any]],
  *,
  global_batch_size: int,
  seed: int,
  worker_count: int = 0,
  prefetch: int = 2,
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.IterDataset:
  """Batches of `{"video": (b, N, H, W, C) float32, ...}`, b = this process's share.

  A `WeizmannFolder` gives batches of identities x actions (`weizmann.py`) instead.
  """
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    # grain's worker start reads an absl flag; outside an absl CLI (notebooks, tests,
    # `train(config, workdir)` from Python) it raised UnparsedFlagAccessError.
    flags.FLAGS.mark_as_parsed()
  if isinstance(source, WeizmannFolder):
    return make_grouped_dataset(
      source,
      global_batch_size=global_batch_size,
      seed=seed,
      worker_count=worker_count,
      prefetch=prefetch,
      process_index=process_index,
      process_count=process_count,
    )
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if global_batch_size % count:
    raise ValueError(f"train.batch_size={global_batch_size} does not divide over {count} processes")
  per_process = global_batch_size // count
  num_videos = len(source)
  if num_videos < 1:
    raise ValueError("the data source holds no videos")
  passes = passes_per_epoch(num_videos, global_batch_size)
  # Shuffle and repeat entry indices, not items, so the read sees the position. The
  # copies are made before the split over processes, so every process gets a full
  # batch's share even of a source smaller than the number of processes.
  entries = grain.MapDataset.range(num_videos * passes)[index::count]
  ds = entries.shuffle(seed=seed).repeat(None)
  ds = ds.map_with_index(_ReadAtEpoch(source, len(entries), num_videos, passes))
  ds = ds.batch(per_process, drop_remainder=True)
  it = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=max(1, prefetch), prefetch_buffer_size=prefetch)
  )
  if worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it
