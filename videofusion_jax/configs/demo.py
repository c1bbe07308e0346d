"""A tiny VideoFusion that runs on a laptop CPU in minutes; `setting=gpu` trains it longer.

  make demo      # or: python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo
  python -m videofusion_jax.train --config=configs/demo.py:setting=gpu --workdir=runs/demo
  python -m videofusion_jax.train --config=configs/demo.py:cond=class --workdir=runs/demo_class
  python -m videofusion_jax.sample --config=configs/demo.py:cond=class --workdir=runs/demo_class \
      --class_id=2
  python -m videofusion_jax.train --config=configs/demo.py:stage=sr --workdir=runs/demo_sr
  python -m videofusion_jax.sample --config=configs/demo.py --workdir=runs/demo \
      --superres_workdir=runs/demo_sr   # writes runs/demo/samples and samples_32

Keys (docs/configs.md; the old `demo.py:gpu`, a bare word, still means `setting=gpu`):
  setting  cpu (default): the 2-core laptop demo; gpu: the same model and data trained
           longer on a GPU/TPU; tiny: the tests' shapes (4-frame clips, batch 2, 3 steps,
           2 DDIM steps for 2 videos), which each test overrides only where it must
  cond     none (default); class: each synthetic clip's shapes share one of 6 colours,
           and the colour is the class (data.synthetic_labels="colour"): samples of a
           class should take its colour (and so its direction), and classifier-free
           guidance sharpens that
  stage    base (default): the video model; sr: a tiny super-resolution stage for it,
           its 16x16 frames -> 32x32 (with cond=class it takes the class too, trained
           with condition dropout so that the cascade guides it)

`make demo` passes `setting=gpu` when JAX's default backend is a GPU or TPU. On 2 CPU
cores (800 steps, 7 min 39 s with sampling) each sample holds one shape in every frame,
the centre included, gliding its colour's way at 0.66 px/frame with straightness 0.96
(data 0.75 and 0.99), frame change 7.3/255 (data 5.7) (docs/demo.md; the search behind
the recipe: benchmarks/RESULTS.md "Demo that moves").
"""

from videofusion_jax.configs import base
from videofusion_jax.configs.arguments import Arguments
from videofusion_jax.data.synthetic import NUM_COLOURS
from videofusion_jax.models import presets
from videofusion_jax.models.from_config import unet_fields
from videofusion_jax.models.unet import UNetConfig

ARGS = Arguments(
  "configs/demo.py",
  main="setting",
  keys=dict(setting=("cpu", "gpu", "tiny"), cond=("none", "class"), stage=("base", "sr")),
)


def get_config(arg: str = "", **defaults: str):
  """`arg`: e.g. "setting=gpu,cond=class" (ARGS); `defaults` replace the keys' defaults
  (the alias files: configs/demo_class.py passes cond="class")."""
  a = ARGS.parse(arg, **defaults)
  c = _demo(a["setting"])
  if a["stage"] == "sr":
    _superres(c)
  if a["cond"] == "class":
    _class_conditioned(c, a["stage"])
  return c


def _demo(setting: str):
  c = base.get_config()
  # One shape per clip, each colour gliding its own way at 0.75 px/frame (3.75 px over
  # the clip), inside the frame: the centre frame says where its shape goes, so the
  # residual generator, which denoises each frame from the centre frame and its own
  # noise, can learn the motion in minutes (data/synthetic.py; benchmarks/RESULTS.md
  # "Demo that moves"). Shapes of random velocities (motion "random") needed ~1,500
  # steps of batch 32 to move at all.
  c.data.synthetic_motion = "colour"
  c.data.synthetic_speed = 0.75
  c.data.synthetic_shapes = 1
  c.data.num_frames = 6  # 8 frames: 1.4x the step time, and the far frames lagged
  c.data.image_size = 16
  tiny = presets.tiny()
  c.model.base = unet_fields(tiny.base)
  c.model.residual = unet_fields(tiny.residual)
  c.diffusion.objective = "v"  # clean frames much sooner than eps (docs/math.md)
  # The paper's decomposition with less of the noise shared than its default 0.5: on
  # this budget lam 0.25 moved the shapes 0.66 px/frame (straightness 0.96), lam 0.5
  # 0.45 (0.66), lam 0.75 (8 frames) 0.20 (RESULTS.md "Demo that moves").
  c.diffusion.lam = 0.25
  # The residual frames conditioned on the clean centre frame (the data's in training;
  # sampling finishes the base's centre frame first), not the base's running estimate
  # ("centre_x0"), which let the frames drift from the centre (docs/history.md "Demo quality").
  c.model.residual_context = "centre_frame"
  c.train.num_steps = 800  # 7 minutes on 2 CPU cores (1.9-2.2 steps/s after the compile)
  c.train.batch_size = 8
  c.train.ema_decay = 0.995
  c.train.log_every = 25
  c.train.checkpoint_every = 200
  c.train.sample_every = 0
  c.optim.lr = 3e-3  # annealed to 0 (cosine): 2.5x lower loss at 800 steps than constant
  c.optim.warmup_steps = 50
  c.optim.schedule = "cosine"
  c.optim.base_lr_scale = 1.0  # trained from scratch: no pretrained base to protect
  c.sample.num_steps = 25
  # eta 1: 0.66 px/frame against eta 0's 0.48 on this model (RESULTS.md).
  c.sample.eta = 1.0
  c.sample.num_videos = 16  # the motion measures over 16 videos, not 4
  c.sample.batch_size = 16
  if setting == "gpu":
    # Same model, data and process (a CPU checkpoint in runs/demo resumes here): 12x the
    # steps at 4x the batch, a longer EMA; on an H200 10-14 minutes (12-17 steps/s).
    # Sized on the earlier data (random velocities, 8 frames, lam 0.5), where its first
    # 2,000 steps on a CPU made objects glide 0.25 px/frame (data 0.29) with
    # straightness 0.81 (docs/history.md "Demo quality"); on this data it is unmeasured.
    c.train.num_steps = 10_000
    c.train.batch_size = 32
    c.train.ema_decay = 0.999
    c.train.log_every = 250
    c.train.checkpoint_every = 1_000
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 500
    c.optim.schedule = "cosine"
    # One reader thread makes ~600 synthetic clips/s; a GPU step of batch 32 wants more.
    c.data.worker_count = 8
    c.sample.num_steps = 50
    # Deterministic DDIM kept the motion on the earlier data: at 2,000 steps eta 0 moved
    # objects 0.25 px/frame (data 0.29), eta 1 0.15 (docs/history.md "Demo quality").
    c.sample.eta = 0.0
    c.sample.num_videos = 8
    c.sample.batch_size = 8
  if setting == "tiny":
    _tiny(c)
  return c


def _tiny(c):
  """Shapes that compile in seconds: every test that trains or samples the demo model
  starts here (one set of compiled shapes) and overrides only what it must."""
  c.data.num_frames = 4
  c.data.num_clips = 64
  c.train.num_steps = 3
  c.train.batch_size = 2
  c.train.log_every = 1
  c.train.checkpoint_every = 2
  c.train.tensorboard = False
  c.sample.num_steps = 2
  c.sample.num_videos = 2
  c.sample.batch_size = 2


def _superres(c):
  """The SR stage: the demo's frames (its low-res input) -> twice their size."""
  low = c.data.image_size
  c.data.image_size = 2 * low  # the high-resolution target
  c.data.low_res_size = low  # the base model's frames
  c.model = base.superres_model(
    UNetConfig(
      block_out_channels=(32, 64),
      layers_per_block=1,
      attention_levels=(),
      mid_block_attention=False,
      norm_num_groups=8,
    )
  )
  c.model.aug_max_level = 0.3
  c.train.sample_every = 0  # SR samples need low-res inputs: use the cascade
  c.sample.aug_level = 0.05


def _class_conditioned(c, stage: str):
  """The shapes' colour is the class (6 classes). The SR stage takes the same class; both
  train with condition dropout (train.cond_drop_prob) and sample with guidance."""
  c.data.synthetic_labels = "colour"
  c.cond.kind = "class"
  c.cond.num_classes = NUM_COLOURS
  c.cond.embed_dim = 64  # the tiny U-Nets' 32/64 channels: a small vector
  c.cond.extra_tokens = 0  # additive only: no cross-attention in the demo
  if stage == "base":
    c.sample.num_videos = NUM_COLOURS  # one video per class (sample.class_id = -1)
    c.sample.batch_size = NUM_COLOURS
