"""Stop a training loop cleanly: a signal becomes a flag the loop checks between steps."""

from __future__ import annotations

import signal
import threading

from absl import logging


class Preemption:
  """Turns SIGTERM and a first Ctrl-C into a flag the loop checks, so it can save first.

  Preemptible TPUs send SIGTERM. A laptop user stops a run with Ctrl-C and should not
  lose the steps since the last checkpoint. A second Ctrl-C interrupts at once.
  Signal handlers can only be set from the main thread; elsewhere this does nothing.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal: signal.Signals | None = None  # the first one received
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    logging.warning("%s received: saving a checkpoint and stopping (Ctrl-C again stops "
                    "without saving).", signal.Signals(signum).name)
    self.requested = True
    self.signal = self.signal or signal.Signals(signum)

  def restore(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
