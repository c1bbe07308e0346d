"""A data source that guards its bookkeeping with a lock and still pickles."""

from __future__ import annotations

import threading


class LockedSource:
  """Base of sources whose reads update shared state (skipped items, decode counts)
  under `self._lock`. grain's worker processes (`data.worker_count > 0`) get the source
  pickled; a lock does not pickle, so each process gets its own."""

  def __init__(self):
    self._lock = threading.Lock()

  def __getstate__(self) -> dict:
    state = dict(self.__dict__)
    state.pop("_lock")
    return state

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()
