"""The `:ARG` of `--config=FILE.py:ARG`: big_vision's `key=value` pairs, checked by name.

  --config=configs/demo.py:setting=gpu
  --config=configs/ucf101.py:path=/data/UCF-101,cond=class,stage=sr
  --config=configs/demo.py:gpu            # a bare word: see below

ml_collections passes everything after the first ':' to `get_config(arg)`. The pairs are
separated by commas. A bare word (no '=') is the old spelling, kept working: it sets
the key whose allowed values include it (`demo.py:gpu` is `setting=gpu`, `vdm.py:demo`
is `data=demo`), and otherwise the file's main key (`ucf101.py:/data/UCF-101` is
`path=/data/UCF-101`, `ucf101.py:tfds:/data/tfds` is `path=tfds:/data/tfds`). A path
holding ',' cannot be an argument: give it with `--config.data.path=...` instead.

An unknown key, a key given twice or a value outside a key's choices raises ValueError
in one line naming the file, the key and what it accepts, before anything is built.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

_KEY = re.compile(r"[a-z_]+")


@dataclasses.dataclass(frozen=True)
class Arguments:
  """The keys one config file takes.

  `keys` maps each key to its choices (a tuple of strings, the first the default) or
  to a default string (any value accepted: a path). `main` is the key a bare word sets
  when it is none of the choices.
  """

  file: str  # as users type it, e.g. "configs/demo.py"
  main: str
  keys: Mapping[str, tuple[str, ...] | str]

  def describe(self) -> str:
    """'setting=cpu|gpu|tiny, cond=none|class, path=...' for error lines and docs."""
    return ", ".join(
      f"{k}={'|'.join(v) if isinstance(v, tuple) else '...'}" for k, v in self.keys.items()
    )

  def defaults(self) -> dict[str, str]:
    return {k: v[0] if isinstance(v, tuple) else v for k, v in self.keys.items()}

  def parse(self, arg: str = "", **defaults: str) -> dict[str, str]:
    """`arg` -> {key: value} for every key; `defaults` replace the file's defaults
    (an alias file such as configs/demo_class.py passes cond="class")."""
    unknown = sorted(set(defaults) - set(self.keys))
    if unknown:
      raise ValueError(f"{self.file}: no key {unknown[0]!r}; keys: {self.describe()}")
    values = {**self.defaults(), **defaults}
    given = set()
    for piece in filter(None, str(arg or "").split(",")):
      key, value = self._split(piece)
      if key in given:
        raise ValueError(f"{self.file}:{arg}: {key} given twice")
      given.add(key)
      values[key] = value
    for key, value in values.items():
      choices = self.keys[key]
      if isinstance(choices, tuple) and value not in choices:
        raise ValueError(f"{self.file}: {key}={value!r}; expected one of {'|'.join(choices)}")
    return values

  def _split(self, piece: str) -> tuple[str, str]:
    key, sep, value = piece.partition("=")
    if sep and _KEY.fullmatch(key):
      if key not in self.keys:
        raise ValueError(f"{self.file}: no key {key!r} (in {piece!r}); keys: {self.describe()}")
      return key, value
    # A bare word (or a path holding '='): the key that lists it, else the main key.
    owners = [k for k, v in self.keys.items() if isinstance(v, tuple) and piece in v]
    return (owners[0] if len(owners) == 1 else self.main), piece
