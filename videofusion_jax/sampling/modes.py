"""Which of its four jobs the sample CLI does: `sample.mode`, checked against the rest.

- "videos" (the default): `sample.num_videos` clips of the model's window (`Pipeline`).
- "seed_grid": the `sample.vary` grid of seeds (`Pipeline.seed_grid`, paper Fig. 1).
- "long": videos of `sample.num_frames` > the window, window by window
  (`controls.long_videos`, Sec 4.6).
- "cascade": the videos, then the SR model of `--superres_workdir` on them
  (`Pipeline.cascade`).

The settings each mode needs also imply it, so the CLI's shorthands keep their meaning:
`--vary=base` is a seed grid, `--num_frames=512` long videos, `--superres_workdir=DIR`
the cascade, with `sample.mode` left at its default. A mode set explicitly (on the
command line, or any mode other than "videos" in a config file) must agree with them,
and two settings that ask for different modes are refused: one line naming both.
"""

from __future__ import annotations

from videofusion_jax.cli import ConfigError

MODES = ("videos", "seed_grid", "long", "cascade")
VARY = ("residual", "base", "both")


def _needs(mode: str, window: int) -> str:
  return {
    "seed_grid": "sample.vary (--vary=residual|base|both)",
    "long": f"sample.num_frames > the model's window data.num_frames={window} (--num_frames)",
    "cascade": "--superres_workdir=DIR (an SR model's workdir or a converted SR folder)",
  }[mode]


def sample_mode(sample, *, window: int, superres_workdir: str = "", explicit: bool = False) -> str:
  """The mode the sample CLI runs in, from `sample` (a config's `sample` section, the
  shorthand flags already folded in), the model's `window` (`data.num_frames`) and the
  `--superres_workdir` flag; `explicit`: `sample.mode` was set on the command line.

  Raises `ConfigError` (exit 2), one line naming the fields, for an unknown mode or
  `sample.vary`, two settings asking for different modes, or a mode that contradicts
  a setting or lacks what it needs.
  """
  mode = sample.mode
  if mode not in MODES:
    raise ConfigError(f"sample.mode={mode!r}; expected one of {MODES}")
  if sample.vary and sample.vary not in VARY:
    raise ConfigError(f"sample.vary={sample.vary!r}; expected one of {VARY} (or '')")
  asks = {}  # mode -> the setting that asks for it
  if sample.vary:
    asks["seed_grid"] = f"sample.vary={sample.vary!r} (--vary)"
  if sample.num_frames and sample.num_frames != window:
    asks["long"] = (
      f"sample.num_frames={sample.num_frames} (--num_frames; the model's window is "
      f"data.num_frames={window})"
    )
  if superres_workdir:
    asks["cascade"] = f"--superres_workdir={superres_workdir}"
  if len(asks) > 1:
    raise ConfigError(
      f"{' and '.join(asks.values())} ask for different modes ({', '.join(asks)}); "
      "the sample CLI runs one mode at a time"
    )
  if not explicit and mode == "videos":
    return next(iter(asks), "videos")
  for other, why in asks.items():
    if other != mode:
      raise ConfigError(f"sample.mode={mode!r} but {why} asks for sample.mode={other!r}")
  if mode != "videos" and mode not in asks:
    raise ConfigError(f"sample.mode={mode!r} needs {_needs(mode, window)}")
  return mode
