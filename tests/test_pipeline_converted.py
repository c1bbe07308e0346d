"""`Pipeline.from_converted(DIR)`: a converted image U-Net sampled alone makes the centre
frame a VideoFusion with that U-Net as its base generator makes, as one-frame videos.

The folders are real converted folders: `save_converted` of our own tiny U-Nets (no
torch needed), and `convert diffusers-unet` of tiny diffusers pipelines (with torch)
for what the converter records of the source's scheduler and for a Karlo-style decoder,
which is refused."""

import json

import numpy as np
import pytest
from flax import nnx

from videofusion_jax.convert.converted import CONFIG_FILE, save_converted
from videofusion_jax.convert.scheduler import diffusion_settings
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.noise_sharing import video_keys
from videofusion_jax.models.from_config import unet_fields
from videofusion_jax.models.unet import UNet, UNetConfig
from videofusion_jax.models.videofusion import VideoFusion, VideoFusionConfig
from videofusion_jax.sampling import display, generate
from videofusion_jax.sampling.pipeline import Pipeline

# A tiny ADM-style U-Net predicting eps and its variance (6 channels), 16x16 images.
TINY = UNetConfig(
  out_channels=6,
  block_out_channels=(32, 64),
  layers_per_block=1,
  attention_levels=(1,),
  attention_head_dim=32,
  norm_num_groups=8,
)


def converted_folder(path, config: UNetConfig, **source):
  unet = UNet(config, rngs=nnx.Rngs(3))
  params = nnx.to_pure_dict(nnx.state(unet, nnx.Param))
  return save_converted(path, params, config, source={"path": "tests", **source}), unet


@pytest.fixture(scope="module")
def adm(tmp_path_factory):
  return converted_folder(tmp_path_factory.mktemp("conv") / "adm", TINY, sample_size=16)


def test_images_are_the_centre_frames_of_a_videofusion_with_that_base(adm):
  """DDIM with eta > 0 (fresh noise each step): image k of base seed 3 is the centre
  frame of video k of base seed 3 (any residual seed) from a VideoFusion whose base
  generator is the converted U-Net."""
  folder, unet = adm
  pipe = Pipeline.from_converted(str(folder), num_steps=2, eta=0.5, batch_size=2)
  images = pipe(3, base_seed=3)  # batches of 2: the last one padded
  assert images.shape == (3, 1, 16, 16, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(pipe(3, base_seed=3, residual_seed=8), images)  # no effect
  assert np.abs(pipe(3, base_seed=4).astype(int) - images).mean() > 5
  assert len(pipe._sample_fns) == 1

  vf_config = VideoFusionConfig(
    base=UNetConfig(**unet_fields(TINY)),
    residual=UNetConfig(
      block_out_channels=(32,),
      layers_per_block=1,
      attention_levels=(),
      mid_block_attention=False,
      norm_num_groups=8,
    ),
    learned_variance=True,
  )
  vf = VideoFusion(vf_config, rngs=nnx.Rngs(0))
  nnx.update(vf.base, nnx.state(unet, nnx.Param))
  graphdef, state = nnx.split(vf)
  settings = generate.SamplerConfig(num_steps=2, eta=0.5)
  shape = (3, 4, 16, 16, 3)
  sample_fn = generate.make_sample_fn(graphdef, shape, vf_config.lam, settings)
  videos = sample_fn(state, pipe.schedule, video_keys(3, 0, 3), video_keys(11, 0, 3))
  centre = video_io.to_uint8(np.asarray(videos)[:, 1])
  assert np.abs(centre.astype(int) - images[:, 0]).max() <= 1  # another program: rounding


def test_ddpm_with_the_learned_variance(adm):
  folder, _ = adm
  pipe = Pipeline.from_converted(
    str(folder), sampler="ddpm", ddpm_variance="learned_range", num_timesteps=25, batch_size=2
  )
  a = pipe(2, base_seed=1)
  assert a.shape == (2, 1, 16, 16, 3)
  np.testing.assert_array_equal(pipe(2, base_seed=1), a)
  fixed = Pipeline.from_converted(str(folder), sampler="ddpm", num_timesteps=25, batch_size=2)
  assert np.abs(fixed(2, base_seed=1).astype(int) - a).mean() > 0.5


def test_what_a_converted_unet_cannot_do_is_refused(adm, tmp_path):
  folder, _ = adm
  pipe = Pipeline.from_converted(str(folder), num_steps=2, batch_size=2)
  for call, match in (
    (dict(num_frames=4), "num_frames=4: a converted U-Net alone makes images"),
    (dict(prompt="a cat"), "prompt='a cat': from_converted samples unconditional"),
    (dict(class_id=1), "class_id=1: this U-Net is not class-conditioned"),
    (dict(guidance_scale=3.0), "no learned null condition"),
  ):
    with pytest.raises(ValueError, match=match):
      pipe(1, **call)
  with pytest.raises(ValueError, match="records no sample_size: pass image_size="):
    Pipeline.from_converted(str(converted_folder(tmp_path / "nosize", TINY)[0]))
  with pytest.raises(ValueError, match="sampler='ancestral'"):
    Pipeline.from_converted(str(folder), sampler="ancestral")
  with pytest.raises(TypeError, match=r"unknown settings \['steps'\]"):
    Pipeline.from_converted(str(folder), steps=2)
  with pytest.raises(ValueError, match="needs CLIP image embeddings / context tokens"):
    cross = UNetConfig(**{**unet_fields(TINY), "cross_attention_dim": 16})
    Pipeline.from_converted(str(converted_folder(tmp_path / "x", cross, sample_size=16)[0]))


def test_class_ids_condition_the_images(tmp_path):
  config = UNetConfig(
    **{**unet_fields(TINY), "class_embed_type": "embedding", "num_class_embeds": 4},
    out_channels=3,
  )
  folder, _ = converted_folder(tmp_path / "classes", config, sample_size=16)
  pipe = Pipeline.from_converted(str(folder), num_steps=2, batch_size=2)
  one = pipe(2, base_seed=0, class_id=1)
  assert np.abs(pipe(2, base_seed=0, class_id=3).astype(int) - one).mean() > 0.5
  np.testing.assert_array_equal(pipe(2, base_seed=0)[1], one[1])  # default: classes in turn
  with pytest.raises(ValueError, match=r"class_id=4; this U-Net has classes 0..3"):
    pipe(1, class_id=4)


def test_save_writes_pngs_and_show_makes_images(adm, tmp_path):
  folder, _ = adm
  pipe = Pipeline.from_converted(str(folder), num_steps=2, batch_size=2)
  images = pipe(2, base_seed=5)
  paths = pipe.save(images, str(tmp_path / "out"))
  assert [p.name for p in paths] == ["image_000.png", "image_001.png"]
  from PIL import Image

  np.testing.assert_array_equal(np.asarray(Image.open(paths[1])), images[1, 0])  # lossless
  assert display.image_html(images[:, 0]).count("<img") == 2


def test_the_converter_records_the_sources_scheduler(tmp_path):
  """A diffusers pipeline folder: unet/ beside scheduler/scheduler_config.json."""
  pytest.importorskip("torch")
  diffusers = pytest.importorskip("diffusers")
  from tests.convert.tiny_unets import build_torch_unet
  from videofusion_jax.convert import convert_diffusers_unet

  src = tmp_path / "ddpm_pipeline"
  build_torch_unet("ddpm").save_pretrained(src / "unet")
  diffusers.DDPMScheduler(
    num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction"
  ).save_pretrained(src / "scheduler")
  out = convert_diffusers_unet(src / "unet", tmp_path / "converted")
  scheduler = json.loads((out / CONFIG_FILE).read_text())["source"]["scheduler"]
  assert scheduler["beta_schedule"] == "linear" and scheduler["file"].endswith(
    "scheduler/scheduler_config.json"
  )
  settings = diffusion_settings(scheduler)
  assert (settings["schedule"], settings["num_timesteps"], settings["objective"]) == (
    "linear",
    1000,
    "v",
  )
  pipe = Pipeline.from_converted(str(out), num_steps=2, batch_size=2)  # class-conditioned
  assert (pipe.settings.schedule, pipe.settings.objective) == ("linear", "v")
  assert pipe.num_classes == 10
  assert Pipeline.from_converted(str(out), objective="eps").settings.objective == "eps"


def test_schedules_the_project_cannot_represent_are_one_clear_error():
  for scheduler, match in (
    (dict(beta_schedule="scaled_linear"), "scheduler.beta_schedule='scaled_linear' is not"),
    (dict(beta_schedule="linear", beta_end=0.012), "scheduler.beta_end=0.012: the project's"),
    (dict(prediction_type="sample"), "scheduler.prediction_type='sample'"),
    (dict(trained_betas=[0.1, 0.2]), "scheduler.trained_betas is set"),
  ):
    with pytest.raises(ValueError, match=match):
      diffusion_settings(scheduler)
  assert diffusion_settings(dict(beta_schedule="squaredcos_cap_v2", clip_sample=False)) == {
    "schedule": "cosine",
    "clip_x0": False,
  }


def test_a_karlo_decoder_is_refused_with_what_to_do_instead(tmp_path):
  pytest.importorskip("torch")
  from tests.convert.tiny_unets import build_torch_unet
  from videofusion_jax.convert import convert_diffusers_unet

  build_torch_unet("karlo").save_pretrained(tmp_path / "decoder")
  out = convert_diffusers_unet(tmp_path / "decoder", tmp_path / "converted")
  with pytest.raises(ValueError) as e:
    Pipeline.from_converted(str(out))
  message = str(e.value)
  assert "needs CLIP image embeddings / context tokens" in message and "\n" not in message
  assert "train.init_base_from=" in message and "Pipeline.from_workdir" in message
