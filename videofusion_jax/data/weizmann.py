"""Weizmann Action in content/motion mode (paper Sec 4.7): identities x actions per batch.

Layout: one folder of `<person>_<action>[N].avi` files (`daria_jack.avi`,
`lena_run1.avi`, `lena_run2.avi`, `ido_wave1.avi`), as the dataset ships them. The
person is the identity; the action is the name without its repeat number, except
`wave1` (one hand) and `wave2` (two hands), which are two actions of the dataset.

To teach the model that the base noise carries content and the residual noise motion,
each minibatch is made of blocks of I identities x A actions (one clip per pair, every
pair present in the data), and the train step shares the base noise across clips of
one identity and the residual noise across clips of one action
(`diffusion.noise_sharing.grouped_noise`). Batches carry `identity` and `action` ids.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import grain
import jax
import numpy as np

from videofusion_jax.data.folders import VideoFolder

# Actions whose trailing digit is part of the name, not a repeat number.
NUMBERED_ACTIONS = ("wave1", "wave2")
_NAME = re.compile(r"([A-Za-z]+)_([A-Za-z]+[0-9]*)")


def parse_weizmann_name(path: str | Path) -> tuple[str, str]:
  """`lena_run1.avi` -> ("lena", "run"); `ido_wave2.avi` -> ("ido", "wave2")."""
  stem = Path(path).stem
  match = _NAME.fullmatch(stem)
  if match is None:
    raise ValueError(
      f"{Path(path).name}: not a Weizmann Action name; expected "
      "<person>_<action>[N].<ext>, e.g. daria_jack.avi or lena_run1.avi"
    )
  person, action = match.group(1).lower(), match.group(2).lower()
  if action not in NUMBERED_ACTIONS:
    action = action.rstrip("0123456789")
  return person, action


@dataclasses.dataclass
class WeizmannFolder:
  """Random-access source of {"video", "label", "identity", "action"} over the files.

  `identity`/`action` are indices into the sorted `identities`/`actions`; `label` is
  the action. A file that cannot be read as a clip raises ValueError naming it (a
  skipped file would break the identity x action blocks).
  """

  root: str
  num_frames: int
  image_size: int
  frame_stride: int = 1
  random_start: bool = False
  seed: int = 0
  fps: float | None = None  # frames by timestamp at this rate (VideoFolder)
  download: str = ""
  group_identities: int = 2  # identities per block of a batch
  group_actions: int = 2  # actions per block

  def __post_init__(self):
    self.folder = VideoFolder(
      self.root,
      num_frames=self.num_frames,
      image_size=self.image_size,
      frame_stride=self.frame_stride,
      random_start=self.random_start,
      seed=self.seed,
      fps=self.fps,
      download=self.download,
    )
    names, bad = [], []
    for path in self.folder.paths:
      try:
        names.append(parse_weizmann_name(path))
      except ValueError:
        bad.append(path.name)
    if bad:
      raise ValueError(
        f"data.path={self.root}: {len(bad)} file name(s) are not Weizmann "
        f"<person>_<action>[N] names: {', '.join(bad[:5])}"
      )
    self.identities = sorted({p for p, _ in names})
    self.actions = sorted({a for _, a in names})
    self.identity_ids = np.array([self.identities.index(p) for p, _ in names], np.int32)
    self.action_ids = np.array([self.actions.index(a) for _, a in names], np.int32)
    if self.group_identities < 1 or self.group_actions < 1:
      raise ValueError(
        f"data.group_identities={self.group_identities}, data.group_actions="
        f"{self.group_actions}; expected >= 1 each"
      )
    # Fails now, naming the data, if no block of I x A can be formed.
    draw_block(
      self.identity_ids,
      self.action_ids,
      self.group_identities,
      self.group_actions,
      np.random.default_rng(self.seed),
    )

  def __len__(self) -> int:
    return len(self.folder)

  def __getitem__(self, index: int) -> dict:
    return self.at_epoch(index, 0)

  def at_epoch(self, index: int, epoch: int) -> dict:
    """Clip `index` with its window of pass `epoch` (`VideoFolder.clip`)."""
    video = self.folder.clip(index, epoch)
    return {
      "video": video.astype(np.float32) / 127.5 - 1.0,
      "label": self.action_ids[index],
      "identity": self.identity_ids[index],
      "action": self.action_ids[index],
    }


def draw_block(
  identity_ids,
  action_ids,
  num_identities: int,
  num_actions: int,
  rng: np.random.Generator,
  tries: int = 1000,
) -> np.ndarray:
  """Clip indices of one block: I distinct identities x A distinct actions, one clip
  per pair (drawn among its repeats), identity-major. ValueError if the data cannot
  give such a block (every pair must exist)."""
  clips: dict[tuple[int, int], list[int]] = {}
  for i, (p, a) in enumerate(zip(identity_ids, action_ids)):
    clips.setdefault((int(p), int(a)), []).append(i)
  people = sorted({p for p, _ in clips})
  for _ in range(tries):
    if len(people) < num_identities:
      break
    chosen = rng.choice(people, num_identities, replace=False)
    shared = set.intersection(*({a for (q, a) in clips if q == p} for p in chosen))
    if len(shared) >= num_actions:
      acts = rng.choice(sorted(shared), num_actions, replace=False)
      return np.array([rng.choice(clips[(int(p), int(a))]) for p in chosen for a in acts], np.int64)
  raise ValueError(
    f"no {num_identities} identities share {num_actions} actions in the data "
    f"({len(people)} identities, {len(set(action_ids.tolist()))} actions); "
    "lower data.group_identities / data.group_actions"
  )


@dataclasses.dataclass(frozen=True)
class _GroupedBatch:
  """Global batch j -> this process's share of it, as stacked numpy arrays."""

  source: WeizmannFolder
  blocks: int
  seed: int
  process_index: int
  per_process: int

  def __call__(self, j: int) -> dict:
    rng = np.random.default_rng([self.seed, int(j)])
    s = self.source
    indices = np.concatenate(
      [
        draw_block(s.identity_ids, s.action_ids, s.group_identities, s.group_actions, rng)
        for _ in range(self.blocks)
      ]
    )
    mine = indices[
      self.process_index * self.per_process : (self.process_index + 1) * self.per_process
    ]
    # Grouped batches have no epochs: batch j is the pass whose windows it reads.
    items = [s.at_epoch(int(i), int(j)) for i in mine]
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


def make_grouped_dataset(
  source: WeizmannFolder,
  *,
  global_batch_size: int,
  seed: int,
  worker_count: int = 0,
  prefetch: int = 2,
  process_index: int | None = None,
  process_count: int | None = None,
) -> grain.IterDataset:
  """Batches of blocks of I identities x A actions; a process reads its share of each.

  Batch j is a function of (seed, j) only, so every process agrees on the global batch
  and a resumed iterator (its state is {"next_index": j}) continues with batch j. With
  random_start its clips' windows are drawn from (seed, j, clip), new for every batch.
  """
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  block = source.group_identities * source.group_actions
  if global_batch_size % block:
    raise ValueError(
      f"train.batch_size={global_batch_size} is not a multiple of "
      f"data.group_identities x data.group_actions = {block}"
    )
  if global_batch_size % count:
    raise ValueError(f"train.batch_size={global_batch_size} does not divide over {count} processes")
  batches = _GroupedBatch(
    source, global_batch_size // block, seed, index, global_batch_size // count
  )
  ds = grain.MapDataset.range(0, sys.maxsize).map(batches)
  it = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=max(1, prefetch), prefetch_buffer_size=prefetch)
  )
  if worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it
