"""Every default of a VideoFusion experiment, each with a comment.

Dataset configs start from `get_config()` and override only what differs. The model
sizes are the paper's Table 8 (UCF101 / Sky Time-lapse / TaiChi-HD). The dataclasses the
code builds from these sections (`SamplerConfig`, `StepConfig`, `VideoFusionConfig`,
`ConditionConfig`, ...) default to the same values: tests/test_configs_defaults.py
compares them field by field, so a default is changed here and there together.

  python -m videofusion_jax.sample --config=configs/base.py --workdir=runs/base
"""

import ml_collections
from ml_collections.config_dict import placeholder

from videofusion_jax.models import presets, superres
from videofusion_jax.models.from_config import unet_fields
from videofusion_jax.models.unet import UNetConfig


def get_config() -> ml_collections.ConfigDict:
  # The settings and their comments read as an aligned table: the formatter leaves them.
  # fmt: off
  c = ml_collections.ConfigDict()
  c.seed = 0                          # parameter initialisation and data order

  c.data = ml_collections.ConfigDict()
  c.data.source = "synthetic"         # "synthetic": built-in moving shapes (no files);
                                      # "folder": videos under data.path (configs/folder.py)
                                      # "webvid": WebVid's CSV + its videos under data.path
                                      # "weizmann": person_action.avi files, grouped
                                      # batches (configs/weizmann.py)
                                      # "tfds": a prepared TensorFlow Datasets
                                      # video set (configs/bair.py)
  c.data.path = ""                    # folder of videos / frame folders for "folder"
  c.data.frame_stride = 1             # take every k-th frame of a video
  c.data.fps = placeholder(float)     # None: frames frame_stride apart, whatever the file's
                                      # rate; e.g. 8.0: the frames whose timestamps are
                                      # nearest t0 + k / 8 s, so clips last num_frames / 8 s
                                      # from 24, 25 and 29.97 fps files alike (frame_stride
                                      # is then unused; shorter files are skipped by name)
  c.data.random_start = False         # clip start: centre of the video, or drawn anew
                                      # each epoch (over the whole video)
  c.data.split_file = ""              # optional list of videos to keep (UCF101 splits)
  c.data.download = ""                # where to get the data (said if data.path is missing)
  c.data.tfds_name = ""               # "tfds": the dataset, e.g. "bair_robot_pushing_small",
                                      # "ucf101/ucf101_1" (name/builder config)
  c.data.split = "train"              # "tfds": the split (TFDS syntax: "train+test", ...)
  c.data.data_dir = ""                # "tfds": folder of prepared datasets, as `tfds build
                                      # --data_dir` wrote it ("": $TFDS_DATA_DIR or
                                      # ~/tensorflow_datasets)
  c.data.num_frames = 16              # frames per clip; the centre frame is (N - 1) // 2
  c.data.image_size = 128             # square frames, H = W
  c.data.channels = 3                 # RGB
  c.data.num_clips = 100_000          # size of the synthetic set (clips are made on read)
  c.data.synthetic_speed = 0.5        # synthetic shapes' speed, pixels per frame
  c.data.synthetic_motion = "random"  # "random": drift and bounce; "colour": each colour
                                      # glides its own way (data/synthetic.py)
  c.data.synthetic_shapes = 2         # synthetic shapes per clip: 1 to this many
  c.data.synthetic_labels = "shape"   # synthetic label: "shape" (2) or "colour" (6
                                      # classes; configs/demo.py:cond=class)
  c.data.webvid_csv = ""              # "webvid": WebVid's results_*.csv (captions)
  c.data.webvid_template = "{page_dir}/{videoid}.mp4"  # "webvid": file of a row, under
                                      # data.path (any CSV column names a part)
  c.data.clip_cache = ""              # npz of CLIP embeddings per clip (cond.kind
                                      # "image_embed"): python -m videofusion_jax.tools.clip_cache
                                      # ("unclip": made with --text_hidden)
  c.data.worker_count = 0             # grain worker processes (0: read in the main one)
  c.data.group_identities = 2         # "weizmann": identities per block of a batch, and
  c.data.group_actions = 2            # actions per block (batch = blocks of I x A clips)

  paper = presets.table8()
  c.model = ml_collections.ConfigDict()
  c.model.kind = "videofusion"        # the network (models/from_config.MODEL_KINDS)
  c.model.base = unet_fields(paper.base)          # image U-Net on the centre frame
  c.model.residual = unet_fields(paper.residual)  # frame U-Net over the other N-1 frames
  # What ties the residual frames to the content (docs/math.md):
  # "centre_estimate" feeds sqrt(ab) * x0_hat of the centre frame as extra input channels;
  # "centre_x0" feeds x0_hat itself (clipped to [-1, 1]: same scale at every noise level);
  # "centre_frame" feeds the clean centre frame (the data's in training; sampling runs the
  # base's trajectory first and conditions the other frames on its finished frame:
  # configs/demo.py, docs/history.md "Demo quality"); "none" is the paper's per-frame residual
  # generator (ablation).
  c.model.residual_context = "centre_estimate"
  c.model.learned_variance = False    # True for converted checkpoints with 2C outputs
  # Execution knobs (they change speed and memory, not the weights; a checkpoint loads
  # whatever they are set to):
  c.model.dtype = "float32"           # compute dtype: "bfloat16" on TPU/GPU (params stay
                                      # model.param_dtype; the loss is computed in float32)
  c.model.param_dtype = "float32"     # parameters, EMA and optimizer state
  c.model.remat = False               # rematerialise each ResNet/attention/temporal block
  c.model.remat_policy = "nothing_saveable"  # jax.checkpoint_policies name to keep saved
  c.model.residual_chunks = 1         # run the residual generator over the batch in this
                                      # many sequential chunks (bounds activation memory)
  c.model.attention = "xla"           # "cudnn": cuDNN's fused flash attention on a CUDA GPU
                                      # (bfloat16/float16, >= 256 tokens; XLA otherwise)

  # Conditioning (models/conditioning.py): both generators see the condition, added to the
  # timestep embedding and as attention tokens, as unCLIP decoders do (paper Sec 4.1).
  c.cond = ml_collections.ConfigDict()
  c.cond.kind = "none"                # "class" (data labels), "image_embed" (CLIP vectors
                                      # of centre frames, from data.clip_cache), "unclip"
                                      # (a converted unCLIP decoder's text_proj: image
                                      # embedding + caption text; configs/karlo.py) or "none"
  c.cond.num_classes = 0              # kind "class": ids in [0, num_classes)
  c.cond.embed_dim = 768              # CLIP image embedding size / class vector size
  c.cond.extra_tokens = 4             # attention tokens made from the vector (0: none)
  c.cond.text_dim = 0                 # CLIP text hidden width: caption tokens by
                                      # cross-attention (0: no text tokens)
  c.cond.context_dim = 0              # kind "unclip": the attention tokens' width (the
                                      # decoder's cross_attention_dim; 0: cond.embed_dim)
  c.cond.time_embed_dim = 0           # kind "unclip": width of the vector added to the
                                      # timestep embedding (the base U-Net's time_embed_dim)

  c.diffusion = ml_collections.ConfigDict()
  c.diffusion.schedule = "cosine"     # "cosine" (paper) or "linear"
  c.diffusion.num_timesteps = 1000    # T
  c.diffusion.lam = 0.5               # base-noise share of non-centre frames (0.9 Weizmann)
  c.diffusion.objective = "eps"       # "eps" (paper) or "v" (each network's own v)
  c.diffusion.noise_mode = "decomposed"  # "standard": independent noise (VDM baseline)

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 200_000         # optimizer steps in all (a resume continues to it)
  c.train.batch_size = 64             # global batch, in clips
  c.train.ema_decay = 0.9999          # EMA of parameters, used for sampling
  c.train.base_stop_gradient = True   # Eq. 14; False is Table 7's "w/o stop gradient"
  c.train.cond_drop_prob = 0.1        # clips trained unconditionally (for guidance)
  c.train.log_every = 100             # steps between metric lines
  c.train.checkpoint_every = 5_000    # steps between checkpoints (also at the end/SIGTERM)
  c.train.max_checkpoints = 3         # checkpoints kept in WORKDIR/checkpoints
  c.train.max_nonfinite_steps = 10    # consecutive steps with a NaN/inf loss or gradient
                                      # (each skipped) before the run stops, exit code 3
  c.train.sample_every = 20_000       # steps between EMA sample videos (0: only CLI)
  c.train.tensorboard = True          # TensorBoard events in WORKDIR/tensorboard
  # Every host of a multi-process run writes the checkpoint together, so the workdir
  # must be one folder all hosts see: a local path on a pod is refused at startup
  # (each host would write its own shards into its own disk). True for a path on a
  # filesystem shared by every host (NFS, Lustre, a mounted bucket).
  c.train.allow_local_workdir_multihost = False
  # Folders written by `python -m videofusion_jax.convert diffusers-unet` (README): start
  # the base generator from a pretrained image U-Net (paper setup; model.base must match
  # it, see the folder's config_snippet.py), and optionally the residual generator too
  # (extra input channels and frame embedding output start at zero). "": random init.
  c.train.init_base_from = ""
  c.train.init_residual_from = ""

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-4                   # peak learning rate of the residual generator
  c.optim.schedule = "constant"       # after warmup: "constant" or "cosine" to 0
  c.optim.warmup_steps = 1_000
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.0
  c.optim.grad_clip = 1.0             # global-norm clipping (0: off)
  c.optim.base_lr_scale = 0.1         # base generator's lr = lr * scale (paper: small lr)
  c.optim.freeze_base = False         # True: Table 7's "fixed" base generator

  # Device mesh (parallel.py): axes (data, fsdp, tensor), -1 = the rest of the devices.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1                    # data parallel: batch split, parameters replicated
  c.mesh.fsdp = 1                     # batch split and parameters sharded (ZeRO-3 style)
  c.mesh.tensor = 1                   # channels/heads of each layer split (Megatron)
  c.mesh.num_slices = 1               # >1: the data axis spans TPU slices (DCN) or GPU
                                      # nodes; fsdp/tensor stay inside one (ICI, NVLink)
  # Pin the U-Nets' activations at block boundaries (batch split, channels whole) while a
  # sharded train step is traced; False leaves their layout to the partitioner's
  # propagation (the sampler always pins; neither pins under GSPMD or on one device).
  c.mesh.pin_activations = True
  # Logical axis -> mesh axes. A dimension that does not divide evenly stays replicated.
  c.mesh.rules = (
      ("batch", ("data", "fsdp")),
      ("embed", "fsdp"),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("frames", None),
      ("height", None),
      ("width", None),
  )

  # Multi-host: jax.distributed.initialize() before anything touches the devices.
  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = "auto"      # "auto" (TPU pod / SLURM / JAX_COORDINATOR_ADDRESS
                                      # detected), "true" or "false"
  c.distributed.coordinator_address = ""  # host:port of process 0 ("" = detect)
  c.distributed.num_processes = -1    # -1 = detect
  c.distributed.process_id = -1       # -1 = detect

  c.sample = ml_collections.ConfigDict()
  c.sample.mode = "videos"            # what the sample CLI makes: "videos" (num_videos
                                      # clips), "seed_grid" (needs vary), "long" (needs
                                      # num_frames > data.num_frames) or "cascade" (needs
                                      # --superres_workdir); --vary, --num_frames and
                                      # --superres_workdir imply theirs (docs/sampling.md)
  c.sample.sampler = "ddim"           # "ddim" or "ddpm" (Algorithm 1, all T steps)
  c.sample.num_steps = 50             # DDIM steps
  c.sample.eta = 0.0                  # DDIM stochasticity; 1.0 ~ DDPM
  c.sample.clip_x0 = True             # clip the predicted clean video to [-1, 1]
  c.sample.ddpm_variance = "fixed_small"  # or "learned_range" with learned_variance
  c.sample.num_videos = 8             # videos written by the sample CLI
  c.sample.guidance_scale = 3.0       # classifier-free guidance of conditioned models
                                      # (1: conditional only, 0: unconditional only)
  c.sample.class_id = -1              # cond.kind "class": the class to sample (-1: the
                                      # classes in turn, video k gets k % num_classes)
  c.sample.image_embeds = ""          # cond.kind "image_embed": npz of CLIP image
                                      # embeddings to sample (one per video in turn)
  c.sample.prompt = None              # text-to-video: a prompt ("" = unconditional),
  c.sample.prompts_file = ""          # or a file of prompts, one per line (video k:
                                      # prompt k % count); both need:
  c.sample.clip_dir = ""              # CLIP folder from `convert clip` (text tower)
  c.sample.prior_workdir = ""         # prior from `train_prior` / `convert diffusers-prior`
  c.sample.prior_guidance_scale = 4.0  # the prior's classifier-free guidance
  c.sample.batch_size = 8             # videos per jitted sampling call
  c.sample.allow_untrained = False    # True: a workdir without a checkpoint samples a
                                      # freshly initialised model (noise) instead of failing
  c.sample.base_seed = 0              # base noise: content (same seed, same content)
  c.sample.residual_seed = 1          # residual noise: motion and per-frame detail
  c.sample.fps = 8                    # frame rate of the written mp4/gif
  c.sample.vary = ""                  # seed grid instead: "residual" (one base seed),
                                      # "base" (one residual seed) or "both" (K x K)
  c.sample.num_frames = 0             # > data.num_frames: long videos of this many frames
  c.sample.overlap = 0                # long videos: frames shared by windows (0: half)
  c.sample.fixed_base = True          # long videos: one base noise for the whole video
  # fmt: on
  return c


def superres_model(unet: UNetConfig) -> ml_collections.ConfigDict:
  """The `model` section of a super-resolution stage around `unet` (models/superres.py);
  its defaults are SuperResConfig's. `stage=sr` of configs/demo.py and ucf101.py."""
  d = superres.SuperResConfig()
  # fmt: off
  m = ml_collections.ConfigDict()
  m.kind = "superres"                 # models/superres.py (models/from_config.MODEL_KINDS)
  m.unet = superres.unet_fields(unet)  # per-frame U-Net; its in/out channels and the
                                      # augmentation-level embedding are derived
  m.upsample = d.upsample             # "bilinear" or "bicubic" resize of the low-res frames
  m.residual_input = d.residual_input  # the U-Net denoises x - up(low): same noise, a
                                      # target that is small away from edges
  m.aug_max_level = d.aug_max_level   # training: augmentation level ~ U(0, this) per clip
  m.learned_variance = False
  m.dtype = "float32"                 # execution knobs, as in get_config()'s model
  m.param_dtype = "float32"
  m.remat = False
  m.remat_policy = "nothing_saveable"
  # fmt: on
  return m
