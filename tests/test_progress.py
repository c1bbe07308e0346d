"""The progress helper: plain throttled lines in a log file, a redrawn line on a terminal,
the rate over recent updates with the compile apart, process 0 only. A real train run's
stderr in a log file: tests/test_train.py (`-k progress`)."""

import io
import re

from videofusion_jax.progress import Progress


class Clock:
  """The injected clock: time moves only when the test moves it."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class Terminal(io.StringIO):
  def isatty(self):
    return True


def _steps(text, label="train"):
  return [int(m) for m in re.findall(rf"^{label} (\d+)/", text, re.MULTILINE)]


def test_a_log_file_gets_plain_lines_at_most_one_per_interval_and_the_last(tmp_path):
  clock, log = Clock(), io.StringIO()
  progress = Progress("train", 100, stream=log, clock=clock, log_interval=30, process_index=0)
  clock.now = 10.0  # the first step compiles
  for step in range(1, 101):
    progress.update(step, note="loss 0.5")
    clock.now += 1.0
  progress.close()
  text = log.getvalue()
  assert "\r" not in text and text.endswith("\n")
  # The first update, then one at least 30 s after the previous line, and the last.
  assert _steps(text) == [1, 31, 61, 91, 100]
  assert all(line.endswith("loss 0.5") for line in text.splitlines())


def test_close_writes_the_update_the_throttle_held_back():
  clock, log = Clock(), io.StringIO()
  with Progress("real", 50, unit="videos", stream=log, clock=clock, process_index=0) as progress:
    for done in range(4, 24, 4):  # fewer videos than announced came
      clock.now += 2.0
      progress.update(done)
  assert _steps(log.getvalue(), "real") == [4, 20]


def test_rate_and_eta_come_from_recent_updates_with_the_compile_apart():
  clock, log = Clock(), io.StringIO()
  progress = Progress("train", 1000, stream=log, clock=clock, log_interval=0, process_index=0)
  clock.now = 50.0
  progress.update(1)  # 50 s: the compile
  for step in range(2, 202):  # 1 step/s for 200 s
    clock.now += 1.0
    progress.update(step)
  for step in range(205, 605, 4):  # then 4 steps/s, for longer than the 60 s window
    clock.now += 1.0
    rate = progress.update(step)
  assert rate == 4.0  # since the start it would be 601 / 350 s
  last = log.getvalue().splitlines()[-1]
  assert last.startswith("train 601/1000 steps (60%) | 4 steps/s, ETA 1m40s")
  assert "first update (compile) 50.0 s" in last
  first = log.getvalue().splitlines()[0]
  assert "steps/s" not in first and "first update (compile) 50.0 s" in first


def test_a_terminal_gets_one_line_redrawn_in_place():
  clock, term = Clock(), Terminal()
  progress = Progress("sampling", unit="videos", stream=term, clock=clock, process_index=0)
  for done in (4, 8, 10):
    clock.now += 3.0
    progress.update(done, 10)  # the sampler's callback reports the total
  progress.close()  # the line was closed at 10/10: nothing more
  text = term.getvalue()
  assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")
  assert [d for d in re.findall(r"\rsampling (\d+)/10", text)] == ["4", "8", "10"]


def test_a_terminal_line_stopped_early_is_closed():
  term = Terminal()
  progress = Progress("train", 100, stream=term, clock=Clock(), process_index=0)
  progress.update(1, note="loss 1.0")
  progress.close()
  assert term.getvalue().startswith("\rtrain 1/100 steps") and term.getvalue().endswith("\n")


def test_other_processes_write_nothing_but_still_return_the_rate():
  clock, log = Clock(), io.StringIO()
  progress = Progress("train", 10, stream=log, clock=clock, process_index=1)
  rates = []
  for step in range(1, 11):
    clock.now += 2.0
    rates.append(progress.update(step))
  progress.close()
  assert log.getvalue() == "" and rates[-1] == 0.5
