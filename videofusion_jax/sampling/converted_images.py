"""A converted image U-Net sampled alone: `Pipeline.from_converted(DIR)`.

  pipe = videofusion_jax.Pipeline.from_converted("converted/ddpm_cifar")
  images = pipe(4, base_seed=0)        # uint8 (4, 1, H, W, 3): one-frame videos
  pipe.show(images)                    # or pipe.save(images, "out/"): image_XXX.png

No converter gives a whole video model: a converted folder (`python -m
videofusion_jax.convert diffusers-unet`, convert/converted.py) holds one image U-Net,
which in VideoFusion is a base generator (`train.init_base_from`). In a video model the
base generator alone denoises the centre frame, from the base noise (eps[c] = b,
docs/math.md), so sampled alone here it makes exactly the centre frame a video model
started from it would make: image k of `base_seed` starts from the base noise of video k
of the same seed (`noise_sharing.video_keys`) and draws the fresh noise of DDIM eta > 0
or DDPM from `fold_in(key, t)`, as the video samplers do; the residual seed plays no
part. The per-step math is `diffusion.samplers`' (`ddim_step`, `ddpm_step`), in one
jitted `lax.scan` per batch shape. Its purpose: check that a conversion samples what
its source sampled, before spending a training run on it.

Settings: a keyword given to `load` wins; otherwise what the folder records (the
source's scheduler config, `source.scheduler`, which `convert diffusers-unet` copies
from SRC/../scheduler/scheduler_config.json); otherwise the defaults below. Unconditional
and class-conditioned U-Nets (`class_id=`) only: a U-Net that needs CLIP image
embeddings or context tokens at every call (an unCLIP decoder such as Karlo's) is
refused, with what to do instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from videofusion_jax import diffusion
from videofusion_jax.convert.converted import CONFIG_FILE, load_converted, unet_with_params
from videofusion_jax.convert.folder import read_converted_config
from videofusion_jax.convert.scheduler import diffusion_settings
from videofusion_jax.data import video_io
from videofusion_jax.diffusion.decomposition import eps_from_v
from videofusion_jax.diffusion.noise_sharing import fold_in, video_keys
from videofusion_jax.diffusion.samplers import ddim_step, ddpm_step
from videofusion_jax.diffusion.schedules import ddim_timesteps
from videofusion_jax.models.unet import UNetConfig
from videofusion_jax.sampling import outputs
from videofusion_jax.sampling.generate import padded_batches

SAMPLERS = ("ddim", "ddpm")
DDPM_VARIANCES = ("fixed_small", "learned_range")


@dataclasses.dataclass(frozen=True)
class ImageSettings:
  """How a converted U-Net is sampled; the defaults, where neither a keyword nor the
  folder says otherwise, are the project's (configs/base.py)."""

  schedule: str = "cosine"  # "cosine" (diffusers' squaredcos_cap_v2) or "linear"
  num_timesteps: int = 1000
  objective: str = "eps"  # what the U-Net predicts: "eps" (epsilon) or "v" (v_prediction)
  sampler: str = "ddim"  # or "ddpm": all num_timesteps steps, ancestral
  num_steps: int = 50  # DDIM steps
  eta: float = 0.0  # DDIM noise (0: deterministic given the seed)
  clip_x0: bool = True  # clip x0_hat to [-1, 1] at each step (diffusers' clip_sample)
  ddpm_variance: str = "fixed_small"  # or "learned_range" (a 2C-channel U-Net's own)
  image_size: int | None = None  # default: the source's sample_size
  batch_size: int = 8  # images per jitted call

  def validate(self, unet: UNetConfig) -> None:
    if self.sampler not in SAMPLERS:
      raise ValueError(f"sampler={self.sampler!r}; expected one of {SAMPLERS}")
    if self.ddpm_variance not in DDPM_VARIANCES:
      raise ValueError(f"ddpm_variance={self.ddpm_variance!r}; expected one of {DDPM_VARIANCES}")
    if self.ddpm_variance == "learned_range" and unet.out_channels != 2 * unet.in_channels:
      raise ValueError(
        "ddpm_variance='learned_range' needs a U-Net that predicts its variance "
        f"(out_channels = 2 x in_channels); this one has out_channels={unet.out_channels}"
      )
    if self.objective not in diffusion.OBJECTIVES:
      raise ValueError(f"objective={self.objective!r}; expected one of {diffusion.OBJECTIVES}")
    if not self.eta >= 0:
      raise ValueError(f"eta={self.eta}; expected eta >= 0")
    if self.batch_size < 1:
      raise ValueError(f"batch_size={self.batch_size}; expected >= 1")
    if not self.image_size:
      raise ValueError(
        "the converted folder records no sample_size: pass image_size= (the resolution "
        "the U-Net was trained at)"
      )
    if self.sampler == "ddim":
      ddim_timesteps(self.num_timesteps, self.num_steps)  # validates num_steps


def check_samplable(unet: UNetConfig, source: dict, path) -> None:
  """Refuse, in one line, a U-Net that cannot make images from noise alone."""
  instead = (
    "to sample it, train a video model from it (train.init_base_from="
    f"{path}, with the lines of its config_snippet.py), then Pipeline.from_workdir"
  )
  if source.get("low_res_size"):
    raise ValueError(
      f"{path} is a super-resolution stage (it takes low-res frames); pass it as the SR "
      "stage of a video model: Pipeline.from_workdir(W, superres_workdir=...)"
    )
  if unet.cross_attention_dim or unet.class_embed_type in ("projection", "identity"):
    raise ValueError(
      f"{path}: this U-Net needs CLIP image embeddings / context tokens at every call "
      f"(class_embed_type={unet.class_embed_type!r}, cross_attention_dim="
      f"{unet.cross_attention_dim}; an unCLIP decoder such as Karlo's), which "
      f"from_converted does not make; {instead}"
    )
  if unet.out_channels not in (unet.in_channels, 2 * unet.in_channels):
    raise ValueError(
      f"{path}: out_channels={unet.out_channels} is neither in_channels="
      f"{unet.in_channels} nor twice it; not a pixel-space denoiser"
    )


def make_image_sample_fn(graphdef: nnx.GraphDef, shape, settings: ImageSettings) -> Callable:
  """-> jitted `fn(state, schedule, base_keys (B,), class_labels (B,) or None)`, images
  (B, H, W, C) in [-1, 1]: the base generator's part of `diffusion.ddim_sample` /
  `ddpm_sample` on the centre frame, step for step."""
  b, h, w, c = shape

  def sample_fn(state, schedule, base_keys, class_labels=None):
    unet = nnx.merge(graphdef, state)
    extra = {} if class_labels is None else {"class_labels": class_labels}
    ab = schedule.alphas_cumprod

    def eps_fn(z, t):  # -> (eps, learned-range values or None), as decomposed_denoise
      out = unet(z, jnp.full((b,), t, jnp.int32), **extra)
      out, var = (out[..., :c], out[..., c:]) if out.shape[-1] == 2 * c else (out, None)
      if settings.objective == "v":
        out = eps_from_v(z, out, jnp.sqrt(ab[t]), jnp.sqrt(1.0 - ab[t]))
      return out, var

    def noise(key_data):  # the centre frame of `draw_noise`'s decomposed noise: b
      return jax.vmap(lambda k: jax.random.normal(k, (1, 1, h, w, c))[0, 0])(key_data)

    z = noise(base_keys)
    if settings.sampler == "ddim":
      ts = ddim_timesteps(schedule.num_timesteps, settings.num_steps)
      ab_s = jnp.concatenate([ab[ts[1:]], jnp.ones((1,), ab.dtype)])

      def ddim_body(z, xs):
        t, ab_s = xs
        eps, _ = eps_fn(z, t)
        fresh = noise(fold_in(base_keys, t)) if settings.eta > 0 else None
        z, _ = ddim_step(
          z, eps, ab[t], ab_s, eta=settings.eta, noise=fresh, clip_x0=settings.clip_x0
        )
        return z, None

      z, _ = jax.lax.scan(ddim_body, z, (jnp.asarray(ts), ab_s))
      return z

    def ddpm_body(z, t):
      eps, var = eps_fn(z, t)
      z = ddpm_step(
        z,
        eps,
        t,
        schedule,
        noise=noise(fold_in(base_keys, t)),
        var_values=var,
        variance=settings.ddpm_variance,
        clip_x0=settings.clip_x0,
      )
      return z, None

    steps = jnp.arange(schedule.num_timesteps - 1, -1, -1, dtype=jnp.int32)
    z, _ = jax.lax.scan(ddpm_body, z, steps)
    return z

  return jax.jit(sample_fn)


class ConvertedPipeline:
  """A converted image U-Net with its sampler settings; call it for images, returned as
  one-frame videos (B, 1, H, W, 3) so that `save` / `show` treat them as a Pipeline's."""

  def __init__(self, path, unet, settings: ImageSettings):
    self.path, self.settings = path, settings
    self.unet_config: UNetConfig = unet.config
    settings.validate(self.unet_config)
    self.schedule = diffusion.make_schedule(settings.schedule, settings.num_timesteps)
    self.graphdef, self.state = nnx.split(unet)
    self._sample_fns = {}  # batch size -> jitted sampler

  @classmethod
  def load(cls, path: str | Path, **settings) -> ConvertedPipeline:
    """The U-Net of the converted folder PATH; `settings`: `ImageSettings`' fields."""
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(ImageSettings)})
    if unknown:
      raise TypeError(
        f"from_converted got unknown settings {unknown}; expected some of "
        f"{[f.name for f in dataclasses.fields(ImageSettings)]}"
      )
    source = read_converted_config(path, CONFIG_FILE, "U-Net", "diffusers-unet")["source"]
    recorded = {}
    if source.get("scheduler"):
      recorded = diffusion_settings(source["scheduler"], f"{CONFIG_FILE} source.scheduler")
    size = source.get("sample_size")
    if isinstance(size, (list, tuple)):
      if len(set(size)) != 1:
        raise ValueError(f"{path}: sample_size={size}; from_converted makes square images")
      size = size[0]
    if size:
      recorded["image_size"] = int(size)
    config, params = load_converted(path)
    check_samplable(config, source, path)
    return cls(path, unet_with_params(config, params), ImageSettings(**{**recorded, **settings}))

  @property
  def num_classes(self) -> int | None:
    """Class ids the U-Net takes (`class_id=`), or None for an unconditional one."""
    return self.unet_config.num_class_embeds if self.unet_config.class_embed_type else None

  def __call__(self, num_images: int, base_seed: int = 0, residual_seed: int = 0, **kwargs):
    """uint8 images (num_images, 1, H, W, 3): image k is the centre frame of video k
    of `base_seed` from a video model with this base generator; `residual_seed` is
    taken for a Pipeline's signature and changes nothing. The keywords are `batches`':
    `class_id`, a class-conditioned U-Net's class (default: the classes in turn)."""
    return np.concatenate(list(self.batches(num_images, base_seed, residual_seed, **kwargs)))

  def batches(
    self,
    num_images: int,
    base_seed: int = 0,
    residual_seed: int = 0,
    *,
    num_frames: int | None = None,
    class_id: int | None = None,
    prompt: str | None = None,
    guidance_scale: float | None = None,
    progress: Callable[[int, int], None] | None = None,
  ) -> Iterator[np.ndarray]:
    """The images of `__call__`, a batch of up to `batch_size` at a time."""
    del residual_seed  # an image has no residual noise
    if num_images < 1:
      raise ValueError(f"num_images={num_images}; expected >= 1")
    if num_frames not in (None, 1):
      raise ValueError(
        f"num_frames={num_frames}: a converted U-Net alone makes images (one frame); "
        "for videos, train a video model from it (train.init_base_from) and use "
        "Pipeline.from_workdir"
      )
    if prompt is not None:
      raise ValueError(
        f"prompt={prompt!r}: from_converted samples unconditional and class-conditioned "
        "U-Nets; text needs a video model trained with a text condition (Pipeline.from_workdir)"
      )
    if guidance_scale is not None:
      raise ValueError(
        f"guidance_scale={guidance_scale}: a converted U-Net has no learned null "
        "condition to guide against; its images are sampled conditionally"
      )
    labels = self._class_labels(class_id, num_images)
    keys = video_keys(base_seed, 0, num_images)
    return self._batches(keys, labels, progress)

  def _class_labels(self, class_id, num_images):
    if self.num_classes is None:
      if class_id is not None:
        raise ValueError(f"class_id={class_id}: this U-Net is not class-conditioned")
      return None
    if class_id is None:
      return np.arange(num_images) % self.num_classes  # the classes in turn, as videos
    if not 0 <= class_id < self.num_classes:
      raise ValueError(f"class_id={class_id}; this U-Net has classes 0..{self.num_classes - 1}")
    return np.full((num_images,), class_id)

  def _batches(self, keys, labels, progress):
    total, size = keys.shape[0], min(self.settings.batch_size, keys.shape[0])
    if size not in self._sample_fns:
      s = self.settings.image_size
      shape = (size, s, s, self.unet_config.in_channels)
      self._sample_fns[size] = make_image_sample_fn(self.graphdef, shape, self.settings)
    fn = self._sample_fns[size]
    for done, take, idx in padded_batches(total, size):
      batch_labels = None if labels is None else jnp.asarray(labels[np.asarray(idx)], jnp.int32)
      images = jax.device_get(fn(self.state, self.schedule, keys[idx], batch_labels))[:take]
      if progress is not None:
        progress(done + take, total)
      yield video_io.to_uint8(images)[:, None]

  def save(self, images: np.ndarray, out_dir: str) -> list[Path]:
    """Write each image (K, 1, H, W, 3) as OUT_DIR/image_XXX.png; return the paths."""
    return outputs.save_videos(images, out_dir, fps=1)

  def show(self, images: np.ndarray, **kwargs) -> None:
    """Show the images in the running notebook (`display.show_images`; e.g. `titles=`)."""
    outputs.show_videos(images, fps=1, **kwargs)
