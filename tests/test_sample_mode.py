"""`sample.mode`: the sample CLI's four jobs, implied by its shorthands and checked
against each other, refused in one line before anything is written."""

import subprocess
import sys
from pathlib import Path

import pytest

from videofusion_jax import cli
from videofusion_jax.cli import ConfigError
from videofusion_jax.configs import base
from videofusion_jax.sampling.modes import sample_mode

ROOT = Path(__file__).parents[1]


def mode(explicit=False, superres_workdir="", **sample):
  s = base.get_config().sample
  s.update(sample)
  return sample_mode(s, window=4, superres_workdir=superres_workdir, explicit=explicit)


def test_the_shorthands_imply_their_mode():
  assert mode() == "videos"
  assert mode(vary="base") == "seed_grid"
  assert mode(num_frames=12) == "long"
  assert mode(num_frames=4) == "videos"  # the window itself: plain clips
  assert mode(superres_workdir="runs/sr") == "cascade"
  assert mode(mode="long", num_frames=12) == "long"
  assert mode(explicit=True, mode="videos") == "videos"


@pytest.mark.parametrize(
  "settings, message",
  [
    (
      dict(vary="base", num_frames=12),
      "sample.vary='base' (--vary) and sample.num_frames=12 (--num_frames; the model's "
      "window is data.num_frames=4) ask for different modes (seed_grid, long)",
    ),
    (
      dict(vary="both", superres_workdir="runs/sr"),
      "ask for different modes (seed_grid, cascade)",
    ),
    (
      dict(explicit=True, mode="videos", vary="base"),
      "sample.mode='videos' but sample.vary='base' (--vary) asks for sample.mode='seed_grid'",
    ),
    (
      dict(mode="long", superres_workdir="runs/sr"),
      "sample.mode='long' but --superres_workdir=runs/sr asks for sample.mode='cascade'",
    ),
    (dict(mode="cascade"), "sample.mode='cascade' needs --superres_workdir=DIR"),
    (dict(mode="seed_grid"), "sample.mode='seed_grid' needs sample.vary"),
    (dict(mode="long", num_frames=4), "needs sample.num_frames > the model's window"),
    (dict(mode="grid"), "sample.mode='grid'; expected one of ('videos', 'seed_grid',"),
    (dict(vary="motion"), "sample.vary='motion'; expected one of ('residual', 'base', 'both')"),
  ],
)
def test_contradictions_are_refused_naming_the_fields(settings, message):
  with pytest.raises(ConfigError) as error:
    mode(**settings)
  assert message in str(error.value) and "\n" not in str(error.value)
  assert error.value.exit_code == cli.BAD_INPUT


def _cli(workdir, *flags):
  cmd = [
    sys.executable,
    "-m",
    "videofusion_jax.sample",
    "--config=configs/demo.py",
    f"--workdir={workdir}",
    "--config.data.num_frames=4",
    "--config.sample.num_steps=2",
    "--config.sample.allow_untrained=True",
    *flags,
  ]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.flow  # CLI subprocesses (each refused before any compile): make test-flows
@pytest.mark.parametrize(
  "flags, message",
  [
    # Before sample.mode the seed grid won and --num_frames was dropped without a word.
    (["--vary=base", "--num_frames=12"], "ask for different modes (seed_grid, long)"),
    (["--config.sample.mode=videos", "--vary=base"], "sample.mode='videos' but sample.vary"),
    (["--config.sample.mode=cascade"], "sample.mode='cascade' needs --superres_workdir=DIR"),
    (
      ["--base_seed=5", "--config.sample.base_seed=6"],
      "--base_seed=5 and --config.sample.base_seed=6 disagree",
    ),
    (["--fixed_base=false"], "--fixed_base applies to sample.mode='long' only"),
  ],
)
def test_the_cli_refuses_a_contradiction_in_one_line_before_writing(tmp_path, flags, message):
  out = _cli(tmp_path, *flags)
  assert out.returncode == cli.BAD_INPUT, out.stderr[-2000:]
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and message in last, out.stderr[-2000:]
  assert not (tmp_path / "samples").exists()
