"""Progress of a long loop (train steps, sampled videos, long-video windows, scored videos).

Where the output goes decides how it looks:
- in a notebook (Jupyter, Colab): a tqdm widget;
- on a terminal: one line redrawn in place;
- anywhere else (a log file, `nohup`, a pod's log): one plain line per update, at most
  one every `log_interval` seconds, plus the first and the last, so the log reads line
  by line instead of piling carriage-returned redraws onto one line.

The first update holds the compile (the first step or batch compiles the function), so
its time is shown apart, "first update (compile) 41.3 s", and left out of the rate and
the ETA. These come from the later updates over the last `window` seconds: the current
speed, not an average since the start. Only process 0 shows anything.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Callable, TextIO

import jax
import tqdm.auto  # first: it imports tqdm.autonotebook with its notebook-mode warning off
from tqdm import autonotebook, std


def in_notebook() -> bool:
  """True in a notebook kernel with ipywidgets, where tqdm draws a widget."""
  return autonotebook.tqdm is not std.tqdm


class Progress:
  """`update(done)` after each step or batch; `close()` (or a with-block) at the end.

  `update` returns the rate (units per second) for metrics: over the recent window, or
  for the first update, which has no window yet, since the start (compile included).
  `stream`: sys.stderr by default (a notebook's widget then); `clock` and
  `process_index` default to `time.monotonic` and `jax.process_index()`.
  """

  def __init__(
    self,
    label: str,
    total: int | None = None,
    *,
    unit: str = "steps",
    initial: int = 0,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    log_interval: float = 30.0,
    window: float = 60.0,
    process_index: int | None = None,
  ):
    self.label, self.total, self.unit, self.initial = label, total, unit, initial
    self.clock, self.log_interval, self.window = clock, log_interval, window
    self.start = clock()
    self.show = (jax.process_index() if process_index is None else process_index) == 0
    self.widget = None
    if stream is None:
      stream = sys.stderr
      self.mode = "widget" if in_notebook() else _mode(stream)
    else:
      self.mode = _mode(stream)
    self.stream = stream
    self.updates = 0
    self.first_update = 0.0  # seconds from the start to the first update
    self.recent: collections.deque[tuple[float, int]] = collections.deque()
    self.written_at = self.start  # log mode: when the last line was written
    self.pending = ""  # log mode: the latest line, when the throttle held it back
    self.drawn = 0  # terminal mode: length of the line on screen (0: none open)

  def update(self, done: int, total: int | None = None, *, note: str = "") -> float:
    """`done` units so far (of `total`, which may be given here, as samplers report it);
    `note` ends the line (e.g. "loss 0.1234")."""
    now = self.clock()
    if total is not None:
      self.total = total
    rate = self._record(now, done)
    if self.show:
      self._display(now, done, self._text(now, done, rate, note))
    if rate is None:
      return (done - self.initial) / max(now - self.start, 1e-9)
    return rate

  def close(self) -> None:
    """End the display: the last update is written if the throttle held it back, and
    the terminal line closed, so what follows starts on its own line (also when the
    loop stopped before `total`)."""
    if self.pending:
      self._write(self.pending + "\n")
    if self.drawn:
      self._write("\n")
    if self.widget is not None:
      self.widget.close()
      self.widget = None
    self.pending, self.drawn = "", 0

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _record(self, now: float, done: int) -> float | None:
    """Keep the recent (time, done) points; -> the rate over them, None before the
    second update (the first one's time is the compile's)."""
    self.updates += 1
    if self.updates == 1:
      self.first_update = now - self.start
    self.recent.append((now, done))
    # Drop the old points, but keep two: the rate spans at least one interval.
    while len(self.recent) > 2 and self.recent[1][0] <= now - self.window:
      self.recent.popleft()
    (t0, n0), (t1, n1) = self.recent[0], self.recent[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None

  def _text(self, now: float, done: int, rate: float | None, note: str) -> str:
    parts = [f"{self.label} {done}/{self.total or '?'} {self.unit}"]
    if self.total:
      parts[0] += f" ({100 * done // self.total}%)"
    if rate is not None:
      if self.total and done >= self.total:
        when = f", took {_duration(now - self.start)}"
      elif self.total and rate > 0:
        when = f", ETA {_duration((self.total - done) / rate)}"
      else:
        when = ""
      parts.append(f"{rate:.3g} {self.unit}/s{when}")
    parts.append(f"first update (compile) {self.first_update:.1f} s")
    if note:
      parts.append(note)
    return " | ".join(parts)

  def _display(self, now: float, done: int, text: str) -> None:
    last = bool(self.total) and done >= self.total
    if self.mode == "widget":
      self._widget(done, text, last)
    elif self.mode == "terminal":
      self._write("\r" + text.ljust(self.drawn) + ("\n" if last else ""))
      self.drawn = 0 if last else len(text)
    elif last or self.updates == 1 or now - self.written_at >= self.log_interval:
      self._write(text + "\n")
      self.written_at, self.pending = now, ""
    else:
      self.pending = text

  def _widget(self, done: int, text: str, last: bool) -> None:
    if self.widget is None:
      self.widget = tqdm.auto.tqdm(
        total=self.total,
        initial=self.initial,
        desc=self.label,
        unit=self.unit,
        mininterval=0,  # updates come seconds apart: draw each
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit}{postfix}",
      )
    self.widget.total = self.total
    self.widget.set_postfix_str(text.split(" | ", 1)[1], refresh=False)
    self.widget.update(done - self.widget.n)
    if last:
      self.close()

  def _write(self, text: str) -> None:
    self.stream.write(text)
    self.stream.flush()


def _mode(stream: TextIO) -> str:
  isatty = getattr(stream, "isatty", None)
  return "terminal" if isatty is not None and isatty() else "log"


def _duration(seconds: float) -> str:
  s = int(round(seconds))
  if s >= 3600:
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
  if s >= 60:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s}s"
