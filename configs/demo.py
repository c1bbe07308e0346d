"""A tiny VideoFusion that runs on a laptop CPU in minutes; `:gpu` trains it longer.

  make demo      # or: python -m videofusion_jax.train --config=configs/demo.py --workdir=runs/demo
  python -m videofusion_jax.train --config=configs/demo.py:gpu --workdir=runs/demo

`make demo` passes `:gpu` when JAX's default backend is a GPU or TPU. On 2 CPU cores the
samples keep their objects but still move about twice as much as the data (frame change
~10/255 vs 4/255, benchmarks/RESULTS.md "Demo quality"). On an H200 the `:gpu` setting
runs 12-17 steps/s, and its first 1,500 steps gave smoother residual frames but a centre
frame that no longer matches them (RESULTS.md): not yet the smooth demo it is meant to be.
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
  c.diffusion.objective = "v"         # clean frames much sooner than eps (DESIGN.md)
  # x0_hat of the centre frame at unit scale as the residual frames' context, sampled
  # with DDIM eta = 1: frame change 19.0 -> 9.8/255 at 600 steps (data 4.0), the same
  # objects in 7 of 8 samples (benchmarks/RESULTS.md "Demo quality").
  c.model.residual_context = "centre_x0"
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
  c.sample.eta = 1.0                  # fresh noise per step lets frames re-align late
  c.sample.num_videos = 4
  c.sample.batch_size = 4
  if arg == "gpu":
    # Same model, data and process (a CPU checkpoint in runs/demo resumes here): 17x the
    # steps at 4x the batch, the lr annealed to 0, a longer EMA. Sized from the CPU curve
    # (change 13.6 / 10.4 / 9.0 / 8.6 /255 at 200 / 400 / 800 / 1000 steps); on an H200
    # 10-14 minutes (12-17 steps/s), and at 1,000-1,500 steps the centre frame drifts
    # away from the others (RESULTS.md "Demo quality"): the next fix is the model's.
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
    c.sample.num_videos = 8
    c.sample.batch_size = 8
  return c
