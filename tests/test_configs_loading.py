"""Configs load from any directory and from the package; `FILE.py:key=value` arguments
fold the variants, keep the old spellings, and refuse what they do not know in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from videofusion_jax import configs
from videofusion_jax.configs import demo, folder, ucf101, vdm
from videofusion_jax.models.from_config import model_spec

ROOT = Path(__file__).resolve().parents[1]
# Configs whose default argument needs files that tests do not have (karlo: a converted
# pipeline); they are loaded with an argument that fails the way a user's would.
NEEDS_FILES = {"karlo"}

# Loads each `--config` value with ml_collections' own file parser (what
# `config_flags.DEFINE_config_file` runs) and prints the configs as JSON.
LOADER = """
import json, sys
from ml_collections.config_flags.config_flags import ConfigFileFlagParser
out = {spec: json.loads(ConfigFileFlagParser("config").parse(spec).to_json())
       for spec in sys.argv[1:]}
print(json.dumps(out))
"""


def _installed_like(tmp_path: Path) -> dict:
  """An environment that sees the package as an installed wheel would, and not the
  clone's root: `configs/` (the root one) cannot be imported from it."""
  site = tmp_path / "site"
  if not site.exists():
    site.mkdir()
    (site / "videofusion_jax").symlink_to(ROOT / "videofusion_jax")
  return dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu")


def _load_elsewhere(tmp_path: Path, specs: list[str]) -> dict:
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  out = subprocess.run(
    [sys.executable, "-c", LOADER, *specs],
    cwd=cwd,
    text=True,
    capture_output=True,
    env=_installed_like(tmp_path),
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.splitlines()[-1])


def _as_loaded(name: str, arg: str = "") -> dict:
  module = __import__(f"videofusion_jax.configs.{name}", fromlist=["get_config"])
  return json.loads((module.get_config(arg) if arg else module.get_config()).to_json())


def test_every_config_loads_from_another_directory_by_either_path(tmp_path):
  names = [n for n in configs.names() if n not in NEEDS_FILES]
  root_files = sorted(p.stem for p in (ROOT / "configs").glob("*.py") if p.stem != "__init__")
  assert set(configs.names()) <= set(root_files)  # every config, also at the root
  specs = (
    [str(ROOT / "configs" / f"{n}.py") for n in root_files if n not in NEEDS_FILES]
    + [configs.path(n) for n in names]
    + [
      f"{configs.path('ucf101')}:path=/data/u,cond=class,stage=sr",
      f"{ROOT / 'configs' / 'demo_class_sr.py'}",
    ]
  )
  loaded = _load_elsewhere(tmp_path, specs)
  for name in names:
    assert loaded[configs.path(name)] == _as_loaded(name), name
    assert loaded[str(ROOT / "configs" / f"{name}.py")] == _as_loaded(name), name
  sr = loaded[f"{configs.path('ucf101')}:path=/data/u,cond=class,stage=sr"]
  assert (sr["data"]["path"], sr["cond"]["kind"], sr["model"]["kind"]) == (
    "/data/u",
    "class",
    "superres",
  )
  assert loaded[str(ROOT / "configs" / "demo_class_sr.py")] == _as_loaded(
    "demo", "cond=class,stage=sr"
  )


def test_the_package_names_its_files_for_the_config_flag(tmp_path):
  env = _installed_like(tmp_path)
  out = subprocess.run(
    [sys.executable, "-m", "videofusion_jax.configs", "demo"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr
  printed = Path(out.stdout.strip())
  assert printed.name == "demo.py" and printed.parent.name == "configs"
  assert printed.resolve() == Path(configs.path("demo")).resolve()
  assert Path(configs.path("demo.py")).read_text().startswith('"""A tiny VideoFusion')
  listing = subprocess.run(
    [sys.executable, "-m", "videofusion_jax.configs"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  ).stdout
  assert "demo.py:setting=cpu|gpu|tiny, cond=none|class, stage=base|sr" in listing
  with pytest.raises(ValueError, match="no config 'demo_gpu'; expected one of .*demo"):
    configs.path("demo_gpu")


def test_key_value_arguments_and_the_old_bare_spellings_give_the_same_configs():
  same = [
    ("gpu", "setting=gpu"),
    ("", "setting=cpu,cond=none,stage=base"),
    ("gpu,class", "cond=class,setting=gpu"),
  ]
  for old, new in same:
    assert demo.get_config(old).to_json() == demo.get_config(new).to_json(), old
  assert ucf101.get_config("/d/U").data.path == "/d/U"
  assert ucf101.get_config("path=/d/U,cond=class").data.path == "/d/U"
  tfds = ucf101.get_config("tfds:/d")  # the old `ucf101.py:tfds:DIR`
  assert (tfds.data.source, tfds.data.data_dir) == ("tfds", "/d")
  assert vdm.get_config("demo").to_json() == vdm.get_config("data=demo").to_json()
  assert vdm.get_config("/d/U").data.path == "/d/U"
  tiny = folder.get_config("path=/v,setting=tiny")
  assert (tiny.data.path, tiny.data.num_frames, tiny.data.source) == ("/v", 4, "folder")


@pytest.mark.parametrize(
  "arg, message",
  [
    ("setting=tpu", r"configs/demo.py: setting='tpu'; expected one of cpu\|gpu\|tiny"),
    ("tpu", r"configs/demo.py: setting='tpu'; expected one of cpu\|gpu\|tiny"),
    (
      "cnd=class",
      r"configs/demo.py: no key 'cnd' \(in 'cnd=class'\); keys: "
      r"setting=cpu\|gpu\|tiny, cond=none\|class, stage=base\|sr",
    ),
    ("gpu,setting=cpu", "configs/demo.py:gpu,setting=cpu: setting given twice"),
    ("stage=SR", r"configs/demo.py: stage='SR'; expected one of base\|sr"),
  ],
)
def test_unknown_keys_and_bad_values_are_one_line_naming_file_key_and_choices(arg, message):
  with pytest.raises(ValueError, match=f"^{message}$"):
    demo.get_config(arg)


@pytest.mark.parametrize("setting", ["cpu", "gpu", "tiny"])
@pytest.mark.parametrize("cond", ["none", "class"])
@pytest.mark.parametrize("stage", ["base", "sr"])
def test_every_demo_variant_describes_a_valid_model(setting, cond, stage):
  config = demo.get_config(f"setting={setting},cond={cond},stage={stage}")
  spec = model_spec(config)  # validated, nothing built
  assert type(spec.config).__name__ == ("SuperResConfig" if stage == "sr" else "VideoFusionConfig")
  assert spec.config.cond.kind == cond
  if stage == "sr":  # the SR stage takes the video model's frames as its input
    assert config.data.low_res_size == demo.get_config(f"setting={setting}").data.image_size


def test_the_alias_files_are_the_folded_configs():
  from configs import demo_class, demo_class_sr, ucf101_class_sr, ucf101_sr

  assert demo_class.get_config().to_json() == demo.get_config("cond=class").to_json()
  assert demo_class_sr.get_config().to_json() == demo.get_config("cond=class,stage=sr").to_json()
  assert ucf101_sr.get_config("/d").to_json() == ucf101.get_config("path=/d,stage=sr").to_json()
  assert ucf101_class_sr.get_config("tfds").cond.num_classes == 101


@pytest.mark.flow  # the CLI as a user runs it, from another directory
def test_the_cli_refuses_a_bad_argument_in_one_line_before_the_workdir(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.train",
      f"--config={ROOT / 'configs' / 'ucf101.py'}:path=/d,cond=klass",
      f"--workdir={tmp_path / 'run'}",
    ],
    cwd=tmp_path,
    env=_installed_like(tmp_path),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 2, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1] == (
    "error: configs/ucf101.py: cond='klass'; expected one of none|class"
  )
  assert not (tmp_path / "run").exists()
