"""grain input pipeline: a random-access clip source -> shuffled, batched numpy dicts.

Each process reads only its share of the source (`ds[index::count]`); shuffling is
seeded and re-drawn every epoch (shuffle, then repeat, keeps epochs apart). Item p of
the repeated stream is read as epoch p // (clips per process): sources that cut
windows from longer videos draw a new window each epoch (`folders.item_at_epoch`).
Everything is a function of the seed and the position, so the iterator's state is a
small dict that checkpoints with the model, and a resumed run continues with exactly
the next batch.
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
  """(position p in the repeated stream, clip index) -> the clip as read in epoch
  p // clips_per_epoch; a module-level class so worker processes can unpickle it."""
  source: Sequence[dict[str, Any]]
  clips_per_epoch: int

  def __call__(self, position: int, index: int) -> dict:
    return item_at_epoch(self.source, int(index), position // self.clips_per_epoch)


def make_dataset(source: Sequence[dict[str, Any]], *, global_batch_size: int, seed: int,
                 worker_count: int = 0, prefetch: int = 2,
                 process_index: int | None = None, process_count: int | None = None
                 ) -> grain.IterDataset:
  """Batches of `{"video": (b, N, H, W, C) float32, ...}`, b = this process's share.

  A `WeizmannFolder` gives batches of identities x actions (`weizmann.py`) instead.
  """
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    # grain's worker start reads an absl flag; outside an absl CLI (notebooks, tests,
    # `train(config, workdir)` from Python) it raised UnparsedFlagAccessError.
    flags.FLAGS.mark_as_parsed()
  if isinstance(source, WeizmannFolder):
    return make_grouped_dataset(source, global_batch_size=global_batch_size, seed=seed,
                                worker_count=worker_count, prefetch=prefetch,
                                process_index=process_index, process_count=process_count)
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if global_batch_size % count:
    raise ValueError(f"train.batch_size={global_batch_size} does not divide over "
                     f"{count} processes")
  per_process = global_batch_size // count
  if len(source) < count * per_process:
    raise ValueError(f"the data source holds {len(source)} clips; a batch of "
                     f"{global_batch_size} needs at least that many")
  # Shuffle and repeat clip indices, not items, so the read sees the position.
  clips = grain.MapDataset.range(len(source))[index::count]
  ds = clips.shuffle(seed=seed).repeat(None)
  ds = ds.map_with_index(_ReadAtEpoch(source, len(clips)))
  ds = ds.batch(per_process, drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=max(1, prefetch),
                                            prefetch_buffer_size=prefetch))
  if worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it

