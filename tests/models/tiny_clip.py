"""Tiny CLIP pieces for tests: a BPE vocabulary trained here, and tiny torch configs.

No CLIP vocabulary ships with an installed package, so `train_bpe` learns one from a
small caption corpus in CLIP's format (256 byte characters, the same with `</w>`, one
token per merge, then the special tokens) and `write_vocab` saves vocab.json +
merges.txt as a transformers/diffusers tokenizer folder holds them.
"""

import collections
import json
import re
import unicodedata

from flax import nnx

from videofusion_jax.convert.clip_checkpoint import save_clip
from videofusion_jax.models.clip import (
  CLIPConfig,
  CLIPTextConfig,
  CLIPTextModelWithProjection,
  CLIPVisionConfig,
  CLIPVisionModelWithProjection,
)
from videofusion_jax.models.clip_tokenizer import (
  BOS,
  EOS,
  WORD_SUFFIX,
  bytes_to_unicode,
  split_words,
)

CORPUS = """A photo of a cat sitting on the mat. Two dogs are running in the park!
The quick brown fox jumps over the lazy dog; it's a sunny day, isn't it? We'll see, they'd go.
Café crème brûlée, naïve façade. 東京の夜景 and 北京 skyline, 123 4567 people.
Emojis 😀🎉 and punctuation ... !!! ??? (parentheses) [brackets] {braces} "quotes" 'single'
a man playing guitar on stage, a woman riding a horse on the beach at sunset
timelapse of clouds over mountains; aerial view of a city at night with traffic"""


def train_bpe(corpus: str = CORPUS, num_merges: int = 300):
  """-> (vocab dict, merges list) learnt by CLIP-style BPE on `corpus`."""
  be = bytes_to_unicode()
  text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", corpus)).lower()
  counts = collections.Counter(split_words(text))
  seqs = {}
  for w in counts:
    chars = [be[b] for b in w.encode("utf-8")]
    seqs[w] = tuple(chars[:-1]) + (chars[-1] + WORD_SUFFIX,)
  merges = []
  for _ in range(num_merges):
    pairs = collections.Counter()
    for w, c in counts.items():
      for p in zip(seqs[w][:-1], seqs[w][1:]):
        pairs[p] += c
    if not pairs:
      break
    best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
    merges.append(best)
    for w in counts:
      s, out, i = seqs[w], [], 0
      while i < len(s):
        if i + 1 < len(s) and (s[i], s[i + 1]) == best:
          out.append(s[i] + s[i + 1])
          i += 2
        else:
          out.append(s[i])
          i += 1
      seqs[w] = tuple(out)
  base = list(be.values())
  tokens = base + [t + WORD_SUFFIX for t in base] + [a + b for a, b in merges] + [BOS, EOS]
  return {t: i for i, t in enumerate(tokens)}, merges


def write_vocab(folder, vocab, merges):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
  (folder / "merges.txt").write_text(
    "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
  )
  return folder


def text_config_kwargs(eos_token_id: int = 49, hidden_act: str = "quick_gelu", **kw):
  """transformers CLIPTextConfig arguments of a 2-layer, 32-wide text tower."""
  return dict(
    vocab_size=50,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=16,
    projection_dim=24,
    hidden_act=hidden_act,
    bos_token_id=48,
    eos_token_id=eos_token_id,
    pad_token_id=1,
    **kw,
  )


def vision_config_kwargs(hidden_act: str = "quick_gelu", **kw):
  """transformers CLIPVisionConfig arguments: 16x16 images in 4x4 patches."""
  return dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=16,
    patch_size=4,
    projection_dim=24,
    hidden_act=hidden_act,
    **kw,
  )


def save_random_clip(root):
  """A randomly initialised tiny NNX CLIP (16-d embeddings, 12 tokens, 24x24 images) saved
  in `convert clip`'s layout under root/clip with a trained tokenizer -> (path, towers)."""
  vocab, merges = train_bpe(num_merges=100)
  config = CLIPConfig(
    text=CLIPTextConfig(
      vocab_size=len(vocab),
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=1,
      num_attention_heads=4,
      max_position_embeddings=12,
      projection_dim=16,
      bos_token_id=len(vocab) - 2,
      eos_token_id=len(vocab) - 1,
    ),
    vision=CLIPVisionConfig(
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=1,
      num_attention_heads=4,
      image_size=24,
      patch_size=8,
      projection_dim=16,
    ),
  )
  towers = {
    "text": CLIPTextModelWithProjection(config.text, rngs=nnx.Rngs(0)),
    "vision": CLIPVisionModelWithProjection(config.vision, rngs=nnx.Rngs(1)),
  }
  params = {k: nnx.to_pure_dict(nnx.state(m, nnx.Param)) for k, m in towers.items()}
  tok = write_vocab(root / "tokenizer", vocab, merges)
  out = save_clip(root / "clip", params, config, source={"path": "random"}, tokenizer_dir=tok)
  return out, towers
