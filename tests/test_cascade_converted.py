"""The cascade's SR stage from a converted Karlo folder (`convert unclip` of a tiny random
pipeline): which folders `--superres_workdir` takes, the config it gets, Karlo's
super_res_first/super_res_last split of the steps (checked against the two networks
called step by step), and the CLI's cascade mode writing both resolutions."""

import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from configs import demo  # noqa: E402
from tests.convert.test_unclip_convert import save_tiny_pipeline  # noqa: E402
from videofusion_jax import diffusion  # noqa: E402
from videofusion_jax import sample as sample_cli  # noqa: E402
from videofusion_jax.convert import diffusers_unclip  # noqa: E402
from videofusion_jax.data import video_io  # noqa: E402
from videofusion_jax.diffusion.noise_sharing import draw_noise, video_keys  # noqa: E402
from videofusion_jax.diffusion.samplers import ddim_step  # noqa: E402
from videofusion_jax.models.superres import SuperRes  # noqa: E402
from videofusion_jax.models.superres_stages import FinalStepSwitch  # noqa: E402
from videofusion_jax.sampling import cascade, superres_folders


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """`convert unclip` output of the tiny pipeline: super-res 16 -> 32, eps only."""
  root = tmp_path_factory.mktemp("karlo")
  src, _ = save_tiny_pipeline(root / "karlo")
  for name in ("prior", "text_encoder", "tokenizer"):  # not needed here: quicker to convert
    shutil.rmtree(src / name)
  return diffusers_unclip.convert_unclip_pipeline(src, root / "karlo_jax")


def base_config():
  """The tiny base stage (16x16 frames, what the tiny SR stage takes), 2 DDIM steps."""
  c = demo.get_config()
  c.data.num_frames = 4
  c.sample.num_steps = 2
  c.sample.num_videos = 3
  c.sample.batch_size = 2
  c.sample.allow_untrained = True  # the base workdirs here hold no checkpoint
  return c


def test_folder_kinds_and_clear_errors(converted, tmp_path):
  first = converted / "super_res_first"
  assert superres_folders.folder_kind(first) == ("converted", first)
  assert superres_folders.folder_kind(converted) == ("converted", first)  # OUT itself
  (tmp_path / "sr_run" / "checkpoints").mkdir(parents=True)
  assert superres_folders.folder_kind(tmp_path / "sr_run")[0] == "training"
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("not a model")
  for bad, why in (
    (tmp_path / "other", "holds no SR model"),
    (tmp_path / "nope", "does not exist"),
    (converted / "decoder", "not a super-resolution stage"),
  ):
    with pytest.raises(ValueError, match=why) as e:
      cascade.superres_stage_config(bad, base_config=base_config())
    assert "two kinds of folder: an SR training workdir" in str(e.value)
    assert "convert unclip" in str(e.value)


def test_converted_config_takes_the_network_from_the_folder(converted):
  settings = base_config()
  settings.sample.ddpm_variance = "learned_range"  # base decoders have it; SR here not
  settings.diffusion.schedule = "linear"
  settings.lock()
  sr = cascade.superres_stage_config(converted / "super_res_first", base_config=settings)
  assert sr.model.kind == "superres" and sr.model.upsample == "bicubic"
  assert not sr.model.aug_embedding and not sr.model.learned_variance
  assert (sr.data.low_res_size, sr.data.image_size) == (16, 32)
  assert (sr.diffusion.schedule, sr.diffusion.num_timesteps) == ("cosine", 1000)
  assert sr.sample.ddpm_variance == "fixed_small" and sr.sample.aug_level == 0.0
  assert sr.sample.num_steps == 2 and settings.diffusion.schedule == "linear"  # a copy
  cascade.check_stages(base_config(), sr)
  # --superres_config's sampler settings win over the base config's
  explicit = base_config()
  explicit.sample.num_steps = 3
  sr = cascade.superres_stage_config(converted, explicit, base_config())
  assert sr.sample.num_steps == 3


def test_super_res_last_is_loaded_only_next_to_super_res_first(converted, tmp_path):
  first = converted / "super_res_first"
  sr_config = cascade.superres_stage_config(first, base_config=base_config())
  graphdef, state = cascade.superres_params(sr_config, first)
  pair = nnx.merge(graphdef, state)
  assert isinstance(pair, FinalStepSwitch)
  want = diffusers_unclip.load_superres(converted / "super_res_last")
  np.testing.assert_array_equal(pair.last.unet.conv_in.kernel[...], want.unet.conv_in.kernel[...])
  alone = tmp_path / "alone" / "super_res_first"
  shutil.copytree(first, alone)
  single = nnx.merge(*cascade.superres_params(sr_config, alone))
  assert isinstance(single, SuperRes)


def test_the_last_step_runs_super_res_last(converted):
  """The SR stage's DDIM (2 steps: t = 500, 0) equals super_res_first at t = 500, then
  super_res_last at t = 0, called by hand; first at both steps is far from it."""
  settings = base_config()
  settings.sample.eta = 0.0
  sr_config = cascade.superres_stage_config(converted, settings)
  low = np.random.RandomState(0).uniform(-1, 1, (2, 4, 16, 16, 3)).astype(np.float32)
  got = np.concatenate(list(cascade.superres_batches(sr_config, converted, low)))
  assert got.shape == (2, 4, 32, 32, 3)

  first = diffusers_unclip.load_superres(converted / "super_res_first")
  last = diffusers_unclip.load_superres(converted / "super_res_last")
  schedule = diffusion.make_schedule("cosine", 1000)
  ab = schedule.alphas_cumprod
  s = sr_config.sample
  z_T = draw_noise(
    sr_config.diffusion.noise_mode,
    video_keys(s.base_seed, 0, 2),
    video_keys(s.residual_seed, 0, 2),
    got.shape,
    sr_config.diffusion.lam,
  )
  cond = {"low_res": jnp.asarray(low)}  # augmentation level 0: the frames as they are

  def by_hand(final_model):
    z = z_T
    for model, t, ab_s in ((first, 500, ab[0]), (final_model, 0, 1.0)):
      eps = model(z, jnp.full((2,), t, jnp.int32), ab, cond=cond).eps
      z, _ = ddim_step(z, eps, ab[t], ab_s, eta=0.0, clip_x0=True)
    return np.asarray(z)

  want = by_hand(last)
  np.testing.assert_allclose(got, want, atol=2e-4)
  assert np.abs(got - by_hand(first)).max() > 1e-2


@pytest.mark.slow  # the base model's and the SR pair's sampler compiles: ~20 s
def test_cascade_with_a_converted_folder_writes_both_sizes(converted, tmp_path):
  workdir = tmp_path / "base"  # no checkpoint: the base model samples fresh weights
  low, high = sample_cli.cascade_files(
    base_config(), str(workdir), str(converted / "super_res_first")
  )
  assert (
    [p.name for p in low]
    == [p.name for p in high]
    == ["video_000.mp4", "video_001.mp4", "video_002.mp4", "strip.png"]
  )
  assert video_io.read_video(low[0]).shape == (4, 16, 16, 3)
  assert video_io.read_video(high[0]).shape == (4, 32, 32, 3)
  assert high[0].parent == workdir / "samples_32"
