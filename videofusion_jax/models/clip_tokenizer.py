"""CLIP's byte-level BPE tokenizer in pure Python, reading a local vocab.json + merges.txt.

Text conditioning must not need the network or a compiled tokenizer, so this is the
algorithm of transformers' `CLIPTokenizer` written out: special tokens are cut out first,
the rest is NFC-normalised, whitespace-collapsed and lowercased, split into words by
CLIP's pattern (contractions, letter runs, single digits, punctuation runs), each word's
UTF-8 bytes are mapped to printable characters (GPT-2's `bytes_to_unicode`), the last one
marked with `</w>`, and merged by rank. Ids are `[bos, ..., eos, pad...]` of a fixed
context length (77); longer prompts are truncated with a warning naming them.
`fix_text=True` adds the original OpenAI cleanup (ftfy if installed, HTML unescape).
"""

from __future__ import annotations

import functools
import html
import json
import re
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np
from absl import logging

from videofusion_jax import storage

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
WORD_SUFFIX = "</w>"
_NO_RANK = float("inf")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible map of the 256 byte values to printable unicode characters."""
  bs = (
    list(range(ord("!"), ord("~") + 1))
    + list(range(ord("¡"), ord("¬") + 1))
    + list(range(ord("®"), ord("ÿ") + 1))
  )
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, map(chr, cs)))


def _kind(ch: str) -> str:
  """'s' whitespace, 'L' letter, 'N' number, 'P' anything else (regex \\s, \\p{L}, \\p{N})."""
  if ch.isspace():
    return "s"
  cat = unicodedata.category(ch)[0]
  return cat if cat in ("L", "N") else "P"


def split_words(text: str) -> list[str]:
  """CLIP's pre-tokenizer pattern, leftmost first as `regex` would match it:
  `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`.
  """
  words, i, n = [], 0, len(text)
  while i < n:
    kind = _kind(text[i])
    if kind == "s":
      i += 1
      continue
    special = next((s for s in (BOS, EOS) if text.startswith(s, i)), None)
    contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
    if special or contraction:
      j = i + len(special or contraction)
    elif kind == "N":
      j = i + 1
    else:  # a run of letters, or a run of punctuation
      j = i + 1
      while j < n and _kind(text[j]) == kind:
        j += 1
    words.append(text[i:j])
    i = j
  return words


def _fix_text(text: str) -> str:
  try:
    import ftfy  # pylint: disable=import-outside-toplevel

    text = ftfy.fix_text(text)
  except ImportError:
    pass
  return html.unescape(html.unescape(text)).strip()


class CLIPTokenizer:
  """`CLIPTokenizer(vocab, merges)`; `CLIPTokenizer.from_dir(path)` reads the files."""

  def __init__(
    self,
    vocab: dict[str, int],
    merges: Sequence[tuple[str, str]],
    *,
    context_length: int = 77,
    pad_token: str = EOS,
    fix_text: bool = False,
  ):
    for token in (BOS, EOS, pad_token):
      if token not in vocab:
        raise ValueError(f"the vocabulary has no {token!r} token (not a CLIP vocab.json?)")
    if context_length < 2:
      raise ValueError(f"context_length={context_length}; expected >= 2 (bos and eos)")
    self.encoder = dict(vocab)
    self.ranks = {tuple(m): i for i, m in enumerate(merges)}
    self.byte_encoder = bytes_to_unicode()
    self.context_length = context_length
    self.bos_id, self.eos_id, self.pad_id = vocab[BOS], vocab[EOS], vocab[pad_token]
    self.unk_id = vocab[EOS]  # transformers' default unk_token is <|endoftext|>
    self.fix_text = fix_text
    self._cache: dict[str, list[int]] = {}

  @classmethod
  def from_dir(cls, path: str | Path, **kwargs) -> CLIPTokenizer:
    """Read `vocab.json`, `merges.txt` (and the pad token of `tokenizer_config.json`)."""
    path = storage.path(path)
    vocab_file, merges_file = path / "vocab.json", path / "merges.txt"
    for f in (vocab_file, merges_file):
      if not f.is_file():
        raise FileNotFoundError(
          f"CLIP tokenizer file {f} is missing; expected vocab.json and merges.txt in "
          f"{path} (the `tokenizer/` folder of a transformers/diffusers CLIP checkpoint, "
          "copied there by `python -m videofusion_jax.convert clip`)"
        )
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    lines = merges_file.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("#version"):
      lines = lines[1:]
    merges = []
    for k, line in enumerate(lines):
      if not line.strip():
        continue
      parts = line.split()
      if len(parts) != 2:
        raise ValueError(f"{merges_file} line {k + 1}: {line!r}; expected two tokens")
      merges.append((parts[0], parts[1]))
    config_file = path / "tokenizer_config.json"
    if config_file.is_file() and "pad_token" not in kwargs:
      pad = json.loads(config_file.read_text(encoding="utf-8")).get("pad_token")
      if isinstance(pad, dict):
        pad = pad.get("content")
      if isinstance(pad, str):
        kwargs["pad_token"] = pad
    return cls(vocab, merges, **kwargs)

  def _bpe(self, word: str) -> list[int]:
    """Ids of one pre-token (its bytes mapped to characters, `</w>` on the last)."""
    if word in self._cache:
      return self._cache[word]
    chars = [self.byte_encoder[b] for b in word.encode("utf-8")]
    parts = chars[:-1] + [chars[-1] + WORD_SUFFIX]
    while len(parts) > 1:  # merge the best-ranked pair everywhere, left to right
      rank, pair = min(
        (self.ranks.get(pair, _NO_RANK), pair) for pair in zip(parts[:-1], parts[1:])
      )
      if rank == _NO_RANK:
        break
      merged, i = [], 0
      while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
          merged.append(parts[i] + parts[i + 1])
          i += 2
        else:
          merged.append(parts[i])
          i += 1
      parts = merged
    ids = [self.encoder.get(p, self.unk_id) for p in parts]
    self._cache[word] = ids
    return ids

  def encode(self, text: str) -> list[int]:
    """Token ids of `text` without bos/eos/padding."""
    ids = []
    pattern = "(" + "|".join(re.escape(s) for s in (BOS, EOS)) + ")"
    for piece in re.split(pattern, text):  # special tokens match before normalisation
      if piece in (BOS, EOS):
        ids.append(self.encoder[piece])
        continue
      if self.fix_text:
        piece = _fix_text(piece)
      piece = re.sub(r"\s+", " ", unicodedata.normalize("NFC", piece)).lower()
      for word in split_words(piece):
        ids.extend(self._bpe(word))
    return ids

  def __call__(self, prompts: str | Sequence[str]) -> np.ndarray:
    """Prompts -> int32 (K, context_length): bos, ids, eos, then padding.

    A prompt longer than the context keeps its first `context_length - 2` tokens (a
    warning names it); the empty prompt gives [bos, eos, pad, ...] (unconditional).
    """
    if isinstance(prompts, str):
      prompts = [prompts]
    out = np.full((len(prompts), self.context_length), self.pad_id, np.int32)
    room = self.context_length - 2
    for k, prompt in enumerate(prompts):
      if not isinstance(prompt, str):
        raise ValueError(f"prompt {k} is {type(prompt).__name__} {prompt!r}; expected str")
      ids = self.encode(prompt)
      if len(ids) > room:
        logging.warning(
          "Prompt %r has %d tokens; truncated to the context of %d (%d + bos/eos)",
          prompt,
          len(ids),
          self.context_length,
          room,
        )
        ids = ids[:room]
      row = [self.bos_id, *ids, self.eos_id]
      out[k, : len(row)] = row
    return out
