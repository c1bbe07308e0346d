"""Every default has one value: the frozen dataclasses the code builds from a config's
sections default to what the configs say (configs/base.py; configs/vdm.py,
ucf101.py:stage=sr and webvid_prior.py for the kinds base.py does not describe)."""

import dataclasses

import pytest

from videofusion_jax.checkpoint import FIELD_DEFAULTS
from videofusion_jax.configs import base, ucf101, vdm, webvid_prior
from videofusion_jax.data.webvid import DEFAULT_TEMPLATE
from videofusion_jax.models.conditioning import ConditionConfig, condition_config
from videofusion_jax.models.from_config import videofusion_config
from videofusion_jax.models.prior import PriorConfig
from videofusion_jax.models.superres import SuperResConfig, superres_config
from videofusion_jax.models.vdm import VDMConfig, vdm_config
from videofusion_jax.models.videofusion import VideoFusionConfig
from videofusion_jax.sampling.generate import SamplerConfig, sampler_config
from videofusion_jax.training.prior_loop import prior_config
from videofusion_jax.training.step import StepConfig, step_config

# Deliberate differences, each with its reason.
INTENDED = {
  # diffusers' PriorTransformer default (a converted Karlo prior has no learned null);
  # the prior this project trains learns one (configs/webvid_prior.py).
  "PriorConfig.learned_null",
}


def _step_from_base():
  config = base.get_config()
  return step_config(config, videofusion_config(config))


BUILT_FROM_CONFIGS = {
  "SamplerConfig": (lambda: sampler_config(base.get_config()), SamplerConfig),
  "StepConfig": (_step_from_base, StepConfig),
  "VideoFusionConfig": (lambda: videofusion_config(base.get_config()), VideoFusionConfig),
  "ConditionConfig": (lambda: condition_config(base.get_config()), ConditionConfig),
  "VDMConfig": (lambda: vdm_config(vdm.get_config()), VDMConfig),
  "SuperResConfig": (lambda: superres_config(ucf101.get_config("stage=sr")), SuperResConfig),
  "PriorConfig": (lambda: prior_config(webvid_prior.get_config()), PriorConfig),
}


def disagreements(name: str, from_config, default) -> list[str]:
  """'Class.field: configs X, dataclass Y' for every differing field, nested ones too."""
  out = []
  for field in dataclasses.fields(default):
    a, b = getattr(from_config, field.name), getattr(default, field.name)
    where = f"{name}.{field.name}"
    if dataclasses.is_dataclass(b):
      out += disagreements(where, a, b)
    elif (tuple(a) if isinstance(a, list) else a) != b and where not in INTENDED:
      out.append(f"{where}: configs {a!r}, dataclass {b!r}")
  return out


@pytest.mark.parametrize("name", sorted(BUILT_FROM_CONFIGS))
def test_dataclass_defaults_are_the_configs_defaults(name):
  build, cls = BUILT_FROM_CONFIGS[name]
  assert disagreements(name, build(), cls()) == []


def test_the_disagreement_report_names_class_field_and_both_values():
  s = dataclasses.replace(SamplerConfig(), guidance_scale=1.0)
  assert disagreements("SamplerConfig", s, SamplerConfig()) == [
    "SamplerConfig.guidance_scale: configs 1.0, dataclass 3.0"
  ]
  assert disagreements("PriorConfig", PriorConfig(learned_null=True), PriorConfig()) == []


def test_the_papers_sampling_and_ema_settings():
  """Table 8 / 9: DDIM, 50 steps, guidance 3.0. The paper gives no EMA decay: 0.9999,
  as DDPM and ADM, for runs of its length (the demo overrides it)."""
  s, t = sampler_config(base.get_config()), _step_from_base()
  assert (s.sampler, s.num_steps, s.guidance_scale) == ("ddim", 50, 3.0)
  assert t.ema_decay == 0.9999


def test_defaults_assumed_for_old_checkpoints_are_the_configs():
  """checkpoint.FIELD_DEFAULTS (a saved config without a field means this value) and
  the WebVid file template agree with base.py."""
  config = base.get_config()
  for key, value in FIELD_DEFAULTS.items():
    section, name = key.split(".")
    assert config[section][name] == value, key
  assert config.data.webvid_template == DEFAULT_TEMPLATE
