"""A tiny VideoFusion that runs on a laptop CPU in minutes; `:gpu` trains it longer.

  make demo      # or: python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo
  python -m videofusion_jax.train --config=configs/demo.py:gpu --workdir=runs/demo

`make demo` passes `:gpu` when JAX's default backend is a GPU or TPU. On 2 CPU cores the
samples keep one object per video, the centre frame included, with a frame change of
5.1/255 (data 3.9-4.8), but softer shapes than the data's, and they jitter in place
rather than glide (net speed 0.07 px/frame, data 0.29). The `:gpu` setting runs 12-17
steps/s on an H200. Its recipe, run on a CPU to 2,000 steps, glides: 0.25 px/frame
(benchmarks/RESULTS.md "Demo quality").
"""

from configs import base
from videofusion_jax.models import presets
from videofusion_jax.models.from_config import unet_fields

SETTINGS = ("", "cpu", "gpu")


def get_config(arg: str = ""):
  if arg not in SETTINGS:
    raise ValueError(f"configs/demo.py:{arg}; expected one of {SETTINGS} "
                     "(nothing or 'cpu': the 2-core laptop demo, 'gpu': longer on a GPU/TPU)")
  c = base.get_config()
  c.data.num_frames = 8
  c.data.image_size = 16
  tiny = presets.tiny()
  c.model.base = unet_fields(tiny.base)
  c.model.residual = unet_fields(tiny.residual)
  c.diffusion.objective = "v"         # clean frames much sooner than eps (docs/math.md)
  # The residual frames conditioned on the clean centre frame (the data's in training;
  # sampling finishes the base's centre frame first): frame change 4.8/255 at 600 steps
  # (data 4.0), frames 5.4/255 from the centre (data 8.3), against 9.8 and 11.9 with the
  # base's running estimate ("centre_x0"), which let the frames drift from the centre
  # with longer training (benchmarks/RESULTS.md "Demo quality").
  c.model.residual_context = "centre_frame"
  c.train.num_steps = 600             # about 8 minutes on 2 CPU cores (1.3 steps/s)
  c.train.batch_size = 8
  c.train.ema_decay = 0.995
  c.train.log_every = 25
  c.train.checkpoint_every = 200
  c.train.sample_every = 0
  c.optim.lr = 1e-3
  c.optim.warmup_steps = 100
  c.optim.base_lr_scale = 1.0         # trained from scratch: no pretrained base to protect
  c.sample.num_steps = 25
  c.sample.eta = 1.0                  # here: half eta 0's jitter (the model has no motion yet)
  c.sample.num_videos = 4
  c.sample.batch_size = 4
  if arg == "gpu":
    # Same model, data and process (a CPU checkpoint in runs/demo resumes here): 17x the
    # steps at 4x the batch, the lr annealed to 0, a longer EMA; on an H200 10-14 minutes
    # (12-17 steps/s). Its first 2,000 steps, run on a CPU: objects move 0.10 / 0.17 /
    # 0.25 / 0.25 px/frame net at 500 / 1,000 / 1,500 / 2,000 steps (data 0.29), with
    # straightness 0.22 / 0.50 / 0.72 / 0.81 (data 0.84): motion, not jitter, from
    # ~1,000 steps on (RESULTS.md "Demo quality").
    c.train.num_steps = 10_000
    c.train.batch_size = 32
    c.train.ema_decay = 0.999
    c.train.log_every = 250
    c.train.checkpoint_every = 1_000
    c.optim.warmup_steps = 500
    c.optim.schedule = "cosine"
    # One reader thread makes ~600 synthetic clips/s; a GPU step of batch 32 wants more.
    c.data.worker_count = 8
    c.sample.num_steps = 50
    # Deterministic DDIM keeps the motion the residual generator has learned: at 2,000
    # steps eta 0 moves objects 0.25 px/frame (data 0.29), while eta 1's fresh noise
    # shrinks it to 0.15, and shrank it with training (RESULTS.md "Demo quality").
    c.sample.eta = 0.0
    c.sample.num_videos = 8
    c.sample.batch_size = 8
  return c
