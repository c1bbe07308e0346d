"""Where training metrics go: TensorBoard events, WORKDIR/metrics.jsonl, and the log.

clu's metric writers need TensorFlow for TensorBoard events, which this project keeps
out of its core dependencies; tensorboardX writes the same event files without it.
Only process 0 writes files; the others only log. A run that resumes at step S first
cuts both back to S: a run killed after logging steps it never saved repeats them, and
the files should hold each step once, as the resumed run computed it.

A `gs://` workdir: GCS objects cannot be appended to, so metrics.jsonl is kept in memory
(one line per `train.log_every` steps: a few MB at most) and tensorboardX writes its
event file to a local temporary folder; both are uploaded whole to WORKDIR by a
background thread every `upload_every_s` seconds when something new was logged, at each
`flush` (the train loop flushes after every checkpoint save) and at `close`. Training
never waits on GCS at a log step; a killed run loses at most the last interval's lines,
which are after its last checkpoint, so the resumed run logs them again anyway.
(tensorboardX's own gs:// writer re-uploads the file from its destructor after `close`,
through a second GCS client.)
"""

from __future__ import annotations

import json
import logging as logging_lib
import math
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Mapping

import jax
import numpy as np
from absl import logging

from videofusion_jax import storage


def cut_back_jsonl(path: Path, last_step: int) -> None:
  """Drop the lines of `path` logged after `last_step` (atomically: a kill midway leaves
  the old file or the new one)."""
  path = storage.path(path)
  if not path.exists():
    return
  kept = [
    line
    for line in path.read_text().splitlines(keepends=True)
    if line.strip() and _step_of(line) <= last_step
  ]
  storage.write_bytes(path, "".join(kept).encode())


def _step_of(line: str) -> float:
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):  # a line cut short by a kill
    return math.inf


class MetricWriter:
  """`write(step, scalars)` to TensorBoard + JSONL (process 0) and the absl log.

  `resume_step`: the step the run starts from; what was logged after it is dropped
  (metrics.jsonl rewritten, TensorBoard told to purge it). `upload_every_s`: how often
  a `gs://` workdir's files are uploaded in the background (module docstring).
  """

  def __init__(
    self,
    workdir: str | Path,
    *,
    tensorboard: bool = True,
    resume_step: int | None = None,
    upload_every_s: float = 60.0,
  ):
    self.files = jax.process_index() == 0
    self.jsonl = None
    self.tb = None
    self.uploads = None
    self.lock = threading.Lock()  # the uploader reads what `write` appends
    self.remote = storage.is_remote(workdir)
    if self.files:
      workdir = storage.path(workdir)
      workdir.mkdir(parents=True, exist_ok=True)
      self.jsonl_path = workdir / "metrics.jsonl"
      if resume_step is not None:
        cut_back_jsonl(self.jsonl_path, resume_step)
      if self.remote:
        self.jsonl = _Lines(self.jsonl_path)
      else:
        self.jsonl = open(self.jsonl_path, "a", buffering=1)
      if tensorboard:
        from tensorboardX import SummaryWriter  # imported lazily: optional at sample time

        # purge_step: TensorBoard drops the earlier files' events from this step on.
        purge = None if resume_step is None else resume_step + 1
        self.tb_dir = workdir / "tensorboard"
        self.tb_local = tempfile.mkdtemp(prefix="videofusion-tb-") if self.remote else None
        # Uploaded event files are replaced by name: one named by the second alone (as
        # tensorboardX names them) could replace the previous run's on a quick resume.
        suffix = f".{uuid.uuid4().hex[:8]}" if self.remote else ""
        self.tb = SummaryWriter(
          self.tb_local or str(self.tb_dir), purge_step=purge, filename_suffix=suffix
        )
      if self.remote:
        self.uploads = _PeriodicUploads(self._upload, upload_every_s, self.jsonl_path)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
    logging.info("step %d: %s", step, ", ".join(f"{k}={v:.5g}" for k, v in sorted(scalars.items())))
    with self.lock:
      if self.jsonl is not None:
        self.jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
      if self.tb is not None:
        for k, v in scalars.items():
          self.tb.add_scalar(k, v, step)
    if self.uploads is not None:
      self.uploads.changed()

  def flush(self) -> None:
    """Everything written so far on disk or in the bucket (a `gs://` upload waits)."""
    if self.tb is not None and not self.remote:
      self.tb.flush()
    if self.uploads is not None:
      self.uploads.now()

  def _upload(self) -> None:
    """metrics.jsonl and the event files as they are now (a snapshot taken under the
    lock, so a `write` during the upload changes neither)."""
    with tempfile.TemporaryDirectory(prefix="videofusion-metrics-") as snapshot:
      with self.lock:
        text = self.jsonl.text
        if self.tb is not None:
          self.tb.flush()
          for name in os.listdir(self.tb_local):
            shutil.copy(os.path.join(self.tb_local, name), snapshot)
      storage.write_bytes(self.jsonl_path, text.encode())
      for name in os.listdir(snapshot):
        storage.upload(os.path.join(snapshot, name), self.tb_dir / name)

  def close(self) -> None:
    if self.tb is not None:
      with self.lock:
        self.tb.close()
    if self.uploads is not None:
      self.uploads.close()
    if self.jsonl is not None:
      self.jsonl.close()
    if self.tb is not None and self.tb_local:
      shutil.rmtree(self.tb_local, ignore_errors=True)


class _Lines:
  """metrics.jsonl on GCS: the object's lines, then the new ones, kept in memory; an
  object cannot be appended to, so `MetricWriter` uploads the whole text."""

  def __init__(self, path):
    self.text = path.read_text() if path.exists() else ""

  def write(self, line: str) -> None:
    self.text += line

  def close(self) -> None:
    pass


class _PeriodicUploads:
  """Calls `upload()` from a background thread every `interval` seconds when `changed()`
  was called since the last upload, at `now()` (in the caller's thread) and at `close()`.
  A failed background upload is logged and retried at the next interval; a failed final
  upload is logged as an error naming `target`, not raised (`close` runs in `finally`
  blocks, where raising would hide the error that ended the run)."""

  def __init__(self, upload, interval: float, target):
    self.upload, self.interval, self.target = upload, interval, target
    self.pending = threading.Event()
    self.closing = threading.Event()
    self.one_at_a_time = threading.Lock()
    self.thread = threading.Thread(target=self._run, name="metric-uploads", daemon=True)
    self.thread.start()

  def changed(self) -> None:
    self.pending.set()

  def now(self) -> None:
    with self.one_at_a_time:
      self.pending.clear()
      self.upload()

  def _run(self) -> None:
    while not self.closing.wait(self.interval):
      if not self.pending.is_set():
        continue
      try:
        self.now()
      except Exception as e:  # a network error must not end training
        self.pending.set()
        logging.warning(
          "Uploading metrics to %s failed (%s: %s); retrying in %.0f s.",
          self.target,
          type(e).__name__,
          e,
          self.interval,
        )

  def close(self) -> None:
    self.closing.set()
    self.thread.join()
    try:
      self.now()
    except Exception as e:  # see the class docstring
      logging.error(
        "The last upload of metrics to %s failed (%s: %s): the lines logged "
        "since the previous upload are missing there.",
        self.target,
        type(e).__name__,
        e,
      )


class _LibraryInfoFilter(logging_lib.Filter):
  """Drops INFO lines from orbax/grain (a few per checkpoint) that bury the progress lines,
  and orbax's warning that a folder is read only: `Checkpoints(read_only=True)` readers
  (sampling, evaluation, the train CLI's last line) open it so on purpose."""

  def filter(self, record: logging_lib.LogRecord) -> bool:
    noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "grain"))
    if noisy and "read only" in record.getMessage():
      return False
    return record.levelno >= logging_lib.WARNING or not noisy


def quiet_library_logs() -> None:
  logging.get_absl_handler().addFilter(_LibraryInfoFilter())
