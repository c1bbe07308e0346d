"""What the CLIs share: flags parsed with one-line errors, and exit codes a scheduler reads.

Exit codes (README, launch/README.md); the launchers restart on PREEMPTED only:
  0   DONE        train.num_steps reached (sample, evaluate: finished)
  1   FAILED      an unexpected error: its traceback is printed
  2   BAD_INPUT   a bad flag, config field or input, found before anything was written;
                  or a checkpoint that does not fit the config: one line on stderr
  3   DIVERGED    training stopped on consecutive non-finite steps; the checkpoints
                  hold the last finite state
  4   CHECKPOINT  the checkpoint folder is not writable, or no step in it restores
  75  PREEMPTED   SIGTERM stopped the run after saving a checkpoint: run the same
                  command again (sysexits' EX_TEMPFAIL, "try again later")
  130 STOPPED     Ctrl-C stopped the run after saving: a person asked, nothing restarts
                  it (128 + SIGINT, as a shell reports an interrupted command)
"""

from __future__ import annotations

import re
import sys

from absl import app, flags

DONE, FAILED, BAD_INPUT, DIVERGED, CHECKPOINT, PREEMPTED, STOPPED = 0, 1, 2, 3, 4, 75, 130


class ConfigError(ValueError):
  """A bad config field or input, found before the run wrote anything."""

  exit_code = BAD_INPUT


def fail(message: str, code: int) -> None:
  """Exit with `code` after one line on stderr (no traceback: the line says it all)."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with ml_collections' errors for a bad `--config.x.y=` override
  (an AttributeError after three chained tracebacks) turned into one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(_config_file_error(str(e)) or f"{e} (see --helpfull)", BAD_INPUT)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    fail(_override_error(e, argv), BAD_INPUT)


def _config_file_error(text: str) -> str | None:
  """The config file's own error (`configs/demo.py: setting='tpu'; expected one of ...`)
  out of ml_collections' wrapping, which appends the whole traceback; None for others."""
  if "Error whilst parsing config file" not in text:
    return None
  last = text.strip().splitlines()[-1]
  return re.sub(r"^\w+(Error|Exception): ", "", last)


def _override_error(error: Exception, argv: list[str]) -> str:
  text = str(error.args[0]) if error.args else str(error)
  text = text.replace("\\n", " ").replace("\n", " ").replace("\\'", "'").strip("'\" ")
  name = re.match(r"'?([A-Za-z_][\w]*)'?", text)
  culprit = [
    a.split("=")[0]
    for a in argv[1:]
    if a.startswith("--config.")
    and name
    and re.search(rf"\.{name.group(1)}(=|$|\.)", a.split("=")[0])
  ]
  where = culprit[0] if culprit else "a --config override"
  return f"{where}: no such config field or bad value ({text})"


def run(main) -> None:
  """`app.run(main)` with `parse_flags`; an exception that carries an `exit_code`
  (ConfigError, checkpoint.CheckpointError, nonfinite.Diverged) ends the process with
  that code and its message as one line, any other with its traceback (exit 1)."""

  def main_with_exit_codes(argv):
    try:
      return main(argv)
    except Exception as e:  # re-raised unless it says how to exit
      if getattr(e, "exit_code", None) is None:
        raise
      fail(e, e.exit_code)

  app.run(main_with_exit_codes, flags_parser=parse_flags)
