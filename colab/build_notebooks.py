"""Write the Colab notebooks in colab/ from the cells below, without outputs.

The notebooks are generated so that their source is reviewable Python and their JSON
stays stable (fixed cell ids, no outputs, no execution counts):

  python colab/build_notebooks.py          # rewrite colab/*.ipynb
  python colab/build_notebooks.py --check  # exit 1 if a stored notebook differs

Every notebook opens with the same three cells: an install cell (a no-op where the
package is importable; else `%pip install -e` of the clone the notebook runs in, or in
Colab of `REPO_URL` cloned: the project names no public URL, so there is no placeholder
to edit, only that one variable), the parameters (`TINY` under CI via
VIDEOFUSION_TINY=1) and a setup cell that prints the JAX backend.
`colab/test_notebooks.py` (`make test-notebooks`) executes them with nbclient.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def md(text: str):
  return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(*parts: str):
  """A code cell of `parts`, each dedented on its own (so snippets can be shared)."""
  return nbformat.v4.new_code_cell("\n".join(textwrap.dedent(p).strip("\n") for p in parts).strip())


# No "Open in Colab" badge: a badge needs the repository's public GitHub address, which
# this project does not name (a made-up one would send readers to a page that is not
# there). The install cell says how to run a notebook in Colab from a copy instead.
COLAB_HOWTO = """In Colab: upload this notebook (File > Upload notebook) and set `REPO_URL`
in the first cell to the git URL of your copy of the repository. Elsewhere: open it
from a clone."""


def header(name: str, title: str, intro: str):
  return md(f"# {title}\n\n{textwrap.dedent(intro).strip()}\n\n{COLAB_HOWTO}")


def install(extras: str):
  """The first cell: nothing where videofusion_jax imports already; otherwise `%pip install
  -e` of the clone the notebook runs in or, in Colab, of REPO_URL cloned, with the
  `colab` extra (no kernel packages: Colab pins its own), `extras` and the runtime's
  accelerator."""
  wanted = ",".join(["colab", *filter(None, [extras])])
  return code(f'''
      # Install (about a minute; the JAX build for the runtime's GPU or TPU is picked
      # automatically). Nothing to do where videofusion_jax imports already (a checkout
      # after `make venv`, CI); inside a clone of the repository it installs that clone.
      # In Colab, set REPO_URL to the git URL of your copy of the repository: it is
      # cloned to CLONE_DIR and installed from there.
      REPO_URL = ""
      CLONE_DIR = "/content/videofusion_jax"

      import importlib.util
      import os
      import subprocess
      import sys
      from pathlib import Path


      def find_clone():
        """The repository this notebook runs inside, or the one already in CLONE_DIR."""
        for folder in (Path.cwd(), *Path.cwd().parents, Path(CLONE_DIR)):
          if (folder / "pyproject.toml").is_file() and (folder / "videofusion_jax").is_dir():
            return folder
        return None


      if importlib.util.find_spec("videofusion_jax") is None:
        clone = find_clone()
        if clone is None:
          if not REPO_URL:
            raise RuntimeError("videofusion_jax is not installed and this notebook is not "
                               "inside a clone: set REPO_URL in this cell to the git URL "
                               "of your copy of the repository and run it again")
          subprocess.run(["git", "clone", "--depth=1", REPO_URL, CLONE_DIR], check=True)
          clone = Path(CLONE_DIR)
        accelerator = ("cuda" if os.path.exists("/dev/nvidia0") else
                       "tpu" if os.path.exists("/dev/accel0") or "COLAB_TPU_ADDR" in os.environ
                       else None)
        extras = ",".join(filter(None, ["{wanted}", accelerator]))
        get_ipython().run_line_magic("pip", f"install -q -e {{clone}}[{{extras}}]")
        # A running kernel does not read the new install's path entry (a restart would):
        # this makes the clone importable now.
        sys.path.insert(0, str(clone))
      ''')


def parameters(*body: str):
  return code(
    """
      # Parameters. CI executes every notebook with VIDEOFUSION_TINY=1 (tiny sizes, a few
      # steps, minutes on 2 CPU cores); otherwise the real sizes below are used.
      import os

      TINY = os.environ.get("VIDEOFUSION_TINY", "0") == "1"
      """,
    *body,
  )


SETUP = code("""
    # The checkout holds configs/ next to the package; make it importable and say where
    # JAX runs (CPU, GPU or TPU: the same code runs on each).
    import sys
    from pathlib import Path

    import jax
    import numpy as np
    import videofusion_jax

    ROOT = Path(videofusion_jax.__file__).resolve().parents[1]
    if not (ROOT / "configs").is_dir():
      raise RuntimeError(f"{ROOT} holds no configs/: install videofusion_jax from a checkout "
                         "(pip install -e)")
    if str(ROOT) not in sys.path:
      sys.path.insert(0, str(ROOT))
    print(f"JAX {jax.__version__}, backend: {jax.default_backend()}, devices: "
          f"{[d.device_kind for d in jax.devices()]}")
    if jax.default_backend() == "cpu" and not TINY:
      print("No accelerator: in Colab pick Runtime > Change runtime type > GPU or TPU "
            "(the real sizes are slow on a CPU).")
    """)

# The demo model both quickstart.ipynb and decomposition.ipynb train (same WORKDIR: the
# second one finds the finished run and only loads it).
DEMO_CONFIG = """
    from configs import demo

    config = demo.get_config()
    config.train.num_steps = NUM_STEPS
    config.train.batch_size = BATCH_SIZE
    config.train.log_every = LOG_EVERY
    config.train.checkpoint_every = NUM_STEPS
    config.optim.warmup_steps = min(config.optim.warmup_steps, NUM_STEPS // 4)
    config.sample.num_steps = SAMPLE_STEPS
    """

DEMO_PARAMETERS = """
    WORKDIR = "runs/colab_demo"       # checkpoints, metrics.jsonl, samples/
    NUM_STEPS = 30 if TINY else 800   # configs/demo.py: ~7 min on 2 CPU cores
    BATCH_SIZE = 4 if TINY else 8
    LOG_EVERY = 5 if TINY else 25
    SAMPLE_STEPS = 10 if TINY else 25  # DDIM steps
    """


def quickstart():
  name = "quickstart.ipynb"
  return name, [
    header(
      name,
      "VideoFusion quickstart: train, sample, watch",
      """
          Train the tiny demo VideoFusion (`configs/demo.py`: 6 frames of 16x16, coloured
          shapes moving on black) for a short run, sample videos from its EMA weights and
          watch them, then plot the loss curve from `metrics.jsonl`. Everything goes
          through `train(config, workdir)`, the function `python -m videofusion_jax.train`
          calls, and `videofusion_jax.Pipeline`, the sample CLI's sampler in Python.""",
    ),
    install(""),
    parameters(
      DEMO_PARAMETERS,
      """
          NUM_VIDEOS = 4 if TINY else 8
          """,
    ),
    SETUP,
    md("""
          ## Train
          The progress bar shows steps per second and the loss. Run the cell again and it
          resumes from the last checkpoint in `WORKDIR` (or returns at once when finished)."""),
    code(
      DEMO_CONFIG,
      """
          config.sample.num_videos = NUM_VIDEOS
          config.sample.batch_size = NUM_VIDEOS

          from videofusion_jax.training.loop import train

          last = train(config, WORKDIR)
          print({k: round(v, 4) for k, v in last.items()})
          """,
    ),
    md("""
          ## The loss curve
          `metrics.jsonl` holds one line per logged step. `loss_centre` is the base
          generator's error on the centre frame, `loss_residual` the residual generator's
          on the other frames (Eq. 14)."""),
    code("""
          import json

          import matplotlib.pyplot as plt

          rows = [json.loads(line) for line in open(f"{WORKDIR}/metrics.jsonl")]
          steps = [r["step"] for r in rows]
          fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(11, 3.5))
          for key in ("loss", "loss_centre", "loss_residual"):
            ax.plot(steps, [r[key] for r in rows], marker=".", label=key)
          ax.set(xlabel="step", ylabel="MSE", yscale="log", title="training loss")
          ax.legend()
          ax_lr.plot(steps, [r["lr"] for r in rows], color="gray")
          ax_lr.set(xlabel="step", title="learning rate (warmup)")
          plt.tight_layout()
          plt.show()
          """),
    md("""
          ## Sample and watch
          `Pipeline.from_workdir` loads the checkpoint's config and EMA weights; calling it
          returns uint8 videos `(B, N, H, W, 3)` (the seeds are the sample CLI's: same
          seeds, same videos), `show` plays them enlarged and `save` writes mp4s. Below
          them, clips of the training data.
          After the short CI run the samples are coloured blobs; the full demo run gives
          shapes whose colours persist through a clip."""),
    code("""
          import videofusion_jax
          from videofusion_jax.sampling import display
          from videofusion_jax.data import video_io
          from videofusion_jax.data.sources import make_source
          from videofusion_jax.metrics.motion import frame_change

          pipe = videofusion_jax.Pipeline.from_workdir(WORKDIR)
          videos = pipe(NUM_VIDEOS, base_seed=0, residual_seed=1)
          print(f"samples: {videos.shape}, frame-to-frame change {frame_change(videos):.1f}/255")
          pipe.show(videos, titles=[f"video {k}" for k in range(NUM_VIDEOS)])
          pipe.save(videos, f"{WORKDIR}/samples")

          source = make_source(config.data, seed=config.seed)
          data = video_io.to_uint8(np.stack([source[i]["video"] for i in range(NUM_VIDEOS)]))
          print(f"training clips: frame-to-frame change {frame_change(data):.1f}/255")
          display.show_videos(data, titles=[f"data {i}" for i in range(NUM_VIDEOS)],
                              fps=config.sample.fps)
          """),
  ]


def decomposition():
  name = "decomposition.ipynb"
  return name, [
    header(
      name,
      "The decomposition: base noise, residual noise, and what each controls",
      """
          VideoFusion splits the noise of frame $i$ into a **base noise** $b$ shared by all
          frames and a **residual noise** $r_i$ of its own (Eq. 7):
          $\\epsilon_i = \\sqrt{\\lambda_i}\\, b + \\sqrt{1 - \\lambda_i}\\, r_i$, with
          $\\lambda_i = 1$ at the centre frame and $\\lambda$ elsewhere. An image U-Net (the
          base generator) predicts $b$ from the centre frame; a second U-Net predicts the
          residuals. This notebook shows the consequences with the package's functions:
          the frame correlations for several $\\lambda$, seed grids (same base seed: same
          content; same residual seed: same motion) and a long video by replacement.""",
    ),
    install(""),
    parameters(
      DEMO_PARAMETERS,
      """
          LAMS = (0.0, 0.25, 0.5, 0.9)       # base-noise shares to compare
          NOISE_VIDEOS = 32 if TINY else 256  # noise draws behind each correlation matrix
          GRID = 2 if TINY else 3             # seed grid: GRID base x GRID residual seeds
          LONG_WINDOWS = 3 if TINY else 8     # long video: windows of the 8-frame model
          """,
    ),
    SETUP,
    md("""
          ## Frame correlations of decomposed noise
          Two frames share $\\sqrt{\\lambda_i \\lambda_j}$ of their noise's variance through
          $b$, so their correlation is $\\sqrt{\\lambda_i\\lambda_j}$ (the centre frame with
          any other: $\\sqrt{\\lambda}$). We draw the noise with
          `diffusion.decomposed_noise` and measure it."""),
    code("""
          import jax
          import matplotlib.pyplot as plt

          from videofusion_jax import diffusion

          N = 8
          shape = (NOISE_VIDEOS, N, 16, 16, 3)
          fig, axes = plt.subplots(1, len(LAMS), figsize=(4 * len(LAMS), 3.6))
          noise_videos = []
          for ax, lam in zip(axes, LAMS):
            eps = np.asarray(diffusion.decomposed_noise(jax.random.key(0), jax.random.key(1),
                                                        shape, lam=lam))
            corr = np.corrcoef(np.moveaxis(eps, 1, 0).reshape(N, -1))  # frame x frame
            lams = np.asarray(diffusion.frame_lambdas(N, lam))
            theory = np.sqrt(np.outer(lams, lams))
            np.fill_diagonal(theory, 1.0)
            ax.imshow(corr, vmin=0, vmax=1, cmap="magma")
            ax.set(title=f"lam = {lam} (max error {np.abs(corr - theory).max():.3f})",
                   xlabel="frame", ylabel="frame")
            print(f"lam={lam}: max |measured - theory| = {np.abs(corr - theory).max():.4f}")
            noise_videos.append(eps[0])
          fig.colorbar(axes[-1].images[0], ax=axes, shrink=0.8, label="correlation")
          plt.show()
          """),
    md("""
          The same noise as videos (one draw per $\\lambda$): with $\\lambda = 0$ every frame
          but the centre one is fresh noise; at 0.9 the frames barely change."""),
    code("""
          from videofusion_jax.sampling.display import show_videos  # display(): IPython's

          show_videos(np.clip(np.stack(noise_videos) / 3, -1, 1), fps=4,
                      titles=[f"lam = {lam}" for lam in LAMS])
          """),
    md("""
          ## A trained model
          The demo model of `quickstart.ipynb`, in the same `WORKDIR`: if that notebook
          already trained it, this only finds the finished checkpoint."""),
    code(
      DEMO_CONFIG,
      """
          from videofusion_jax.training.loop import train

          last = train(config, WORKDIR)  # {} when WORKDIR already holds the finished run
          print({k: round(v, 4) for k, v in last.items()} or f"{WORKDIR}: already trained")
          """,
    ),
    md("""
          ## Seed grid: content from the base seed, motion from the residual seed
          `Pipeline.seed_grid(GRID, "both")` samples video $(i, j)$ from base
          seed $i$ and residual seed $j$ (paper Fig. 1; the CLI's `--vary=both`). With DDIM
          ($\\eta = 0$) the centre frame only ever sees the base generator, so videos in a
          row share their centre frame: the matrix on the right is zero within each row's
          block."""),
    code("""
          pipe = videofusion_jax.Pipeline.from_workdir(WORKDIR)
          videos = pipe.seed_grid(GRID, "both")  # uint8 (GRID * GRID, N, H, W, 3)
          show_videos(videos, columns=GRID, fps=config.sample.fps,
                      titles=[f"b{i}_r{j}" for i in range(GRID) for j in range(GRID)])

          centre = videos[:, (videos.shape[1] - 1) // 2].astype(np.float32)
          diff = np.abs(centre[:, None] - centre[None]).mean(axis=(2, 3, 4))
          plt.figure(figsize=(4.2, 3.6))
          plt.imshow(diff, cmap="viridis")
          plt.xticks(range(len(diff)))
          plt.yticks(range(len(diff)))
          plt.colorbar(label="mean |difference| (0-255)")
          plt.title("centre frames, video vs video\\n(row-major: base i, residual j)")
          plt.show()
          """),
    md("""
          ## A long video by replacement (Sec. 4.6)
          `controls.long_videos` makes videos longer than the model's 8-frame window, window
          by window: the frames a window shares with the previous one are replaced at every
          DDIM step by the known frames, noised with that window's own decomposed noise. Here
          the windows overlap by 3 of 8 frames, so each window's centre frame, which carries
          the base noise, is a new one. With the
          base noise fixed for the whole video the content stays; with a fresh base noise per
          window (`fixed_base = False`, the baseline) it drifts. The plot shows how far each
          frame is from the first."""),
    code("""
          from videofusion_jax.data import video_io
          from videofusion_jax.sampling import controls

          long = config.copy_and_resolve_references()
          # Overlap (window - 1) // 2: the centre frame, which carries the base noise, is new in
          # every window, so fixed and fresh base noise differ; with a larger overlap the known
          # centre frame holds the content and both look alike.
          window = long.data.num_frames
          overlap = long.sample.overlap = (window - 1) // 2
          long.sample.num_frames = window + (LONG_WINDOWS - 1) * (window - overlap)
          long.sample.num_videos = 1
          long.sample.batch_size = 1
          results = {}
          for fixed in (True, False):
            long.sample.fixed_base = fixed
            (path,) = controls.long_videos(long, WORKDIR)
            results[fixed] = video_io.read_video(path)
          show_videos(np.stack([results[True], results[False]]), fps=config.sample.fps,
                      titles=["fixed base noise", "fresh base noise per window"])

          plt.figure(figsize=(7, 3))
          for fixed, video in results.items():
            v = video.astype(np.float32)
            plt.plot(np.abs(v - v[0]).mean(axis=(1, 2, 3)), marker=".",
                     label="fixed base" if fixed else "fresh base per window")
          for start in range(window - overlap, long.sample.num_frames - overlap, window - overlap):
            plt.axvline(start, color="gray", lw=0.5)
          plt.xlabel("frame (gray: a new window starts)")
          plt.ylabel("mean |frame - frame 0|")
          plt.legend()
          plt.show()
          """),
    md("""
          ## What the studies say
          Two questions of the paper, asked of the demo at small scale by `make study`
          (docs/baselines.md):

          - **Does shared noise help?** The decomposition study trains the demo with base
            noise shared at $\\lambda$ = 0.25 and 0.5, and with independent noise per frame
            ($\\lambda$ = 0, the standard process, same networks), three seeds each.
          - **Does a pretrained base help?** The pretraining study trains $\\lambda$ = 0.5
            from scratch and with its base generator started from an image diffusion model
            trained on single frames of the same data.

          Each run's samples are scored by FVD against real clips (lower: closer). An arm
          beats another only when their 95% intervals over seeds do not overlap; otherwise
          the arms do not separate at this scale. The studies take hours, so these cells only
          read a study folder: yours, which `make study` writes (`runs/study` in the
          checkout; resumable, or in parts with `make study STUDY_ARGS=--budget_minutes=60`;
          a study still running shows the runs done so far), else the one committed in
          `benchmarks/study_results` (benchmarks/RESULTS.md: where and when it ran)."""),
    code("""
          from pathlib import Path

          from benchmarks import study_plots

          STUDY = "runs/study"  # make study's folder: here, else in the checkout (ROOT)
          COMMITTED = ROOT / "benchmarks/study_results"  # the study in RESULTS.md

          found = [p for p in (Path(STUDY), ROOT / STUDY, COMMITTED) if (p / "study.json").exists()]
          study = study_plots.read_study(found[0] if found else ROOT / STUDY)
          print(study.message)
          if study.done:  # the tables and sentences of runs/study/*.md, from the same numbers
            print(study_plots.summary(study))
          """),
    md("""
          FVD per arm: the square is the arm's mean, its bar the 95% interval over seeds;
          the dots are the runs, each with its bootstrap interval (the spread from the
          finite number of videos) faint. Below: the samples' motion per arm, the dashed
          line the real clips'."""),
    code("""
          if study.done:
            display(study_plots.fvd_figure(study))
            display(study_plots.motion_figure(study))
          else:
            print(study.message)
          """),
    md("""
          Samples of each arm (its first seed), one video per row, frames left to right."""),
    code("""
          if study.done:
            display(study_plots.strips_figure(study))
          else:
            print(study.message)
          """),
  ]


def convert_and_sample():
  name = "convert_and_sample.ipynb"
  return name, [
    header(
      name,
      "Convert a diffusers U-Net into the base generator, then sample",
      """
          The paper starts the base generator from a pretrained image diffusion model.
          `convert_diffusers_unet` turns a diffusers U-Net folder (`config.json` +
          `diffusion_pytorch_model.safetensors`) into an orbax checkpoint of our NNX U-Net;
          `train.init_base_from` starts VideoFusion's base generator from it.

          Mount your own model folder (e.g. from Google Drive) and set `DIFFUSERS_DIR`;
          left empty (and in CI) the notebook builds a tiny, randomly initialised diffusers
          `UNet2DModel` with the layout of the demo's base generator, so everything below
          runs without a download.""",
    ),
    install("convert"),
    parameters("""
          DIFFUSERS_DIR = ""                # a diffusers UNet2DModel folder; "" = tiny random one
          CONVERTED_DIR = "runs/converted_unet"
          WORKDIR = "runs/colab_from_converted"
          # VideoFusion training from the converted base. TINY: the quickstart's settings
          # (same shapes and schedule), so after it the compile cache has the step.
          NUM_STEPS = 30 if TINY else 300
          BATCH_SIZE = 4 if TINY else 8
          SAMPLE_STEPS = 10 if TINY else 25
          NUM_VIDEOS = 4
          """),
    SETUP,
    md("""
          ## The diffusers model
          Without `DIFFUSERS_DIR`: a `UNet2DModel` with random weights (biases and norms
          perturbed too, so a transposed kernel could not hide), saved with
          `save_pretrained` as any hub model folder is."""),
    code("""
          import warnings

          warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, no widgets
          import diffusers
          import torch

          if DIFFUSERS_DIR:
            src = Path(DIFFUSERS_DIR)
          else:
            torch.manual_seed(0)
            unet = diffusers.UNet2DModel(
                sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 64),
                layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=32,
                norm_num_groups=8, attn_norm_num_groups=8, resnet_time_scale_shift="scale_shift")
            with torch.no_grad():
              for p in unet.parameters():
                p.add_(0.1 * torch.randn_like(p))
            src = Path("runs/tiny_diffusers_unet")
            unet.save_pretrained(src)
          torch_unet = diffusers.UNet2DModel.from_pretrained(src, low_cpu_mem_usage=False).eval()
          print(f"{src}: {sorted(p.name for p in src.iterdir())}, "
                f"{sum(p.numel() for p in torch_unet.parameters()) / 1e6:.2f} M parameters")
          """),
    md("""
          ## Convert
          The key map is a table: every torch key must be used and every parameter filled
          with the right shape, or the conversion fails naming them. The output folder
          holds the parameters, `unet_config.json` and `config_snippet.py`, the config lines
          that make `model.base` this U-Net."""),
    code("""
          from videofusion_jax.convert import convert_diffusers_unet, load_unet

          out = convert_diffusers_unet(src, CONVERTED_DIR, overwrite=True)
          print(sorted(p.name for p in out.iterdir()))
          print((out / "config_snippet.py").read_text())
          """),
    md("""
          ## Same function in JAX as in PyTorch
          Both U-Nets on the same noisy images and timesteps: every output value of ours
          against the torch one (channels-last vs channels-first)."""),
    code("""
          import matplotlib.pyplot as plt

          ours = load_unet(out)
          size, channels = torch_unet.config.sample_size, torch_unet.config.in_channels
          x = np.random.default_rng(0).normal(size=(2, size, size, channels)).astype(np.float32)
          t = np.array([10, 900])
          got = np.asarray(ours(jax.numpy.asarray(x), jax.numpy.asarray(t)))
          with torch.no_grad():
            want = torch_unet(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(t)
                              ).sample.permute(0, 2, 3, 1).numpy()
          err = np.abs(got - want).max() / np.abs(want).max()
          print(f"max |JAX - torch| / max |torch| = {err:.2e}")
          plt.figure(figsize=(4, 4))
          plt.scatter(want.ravel(), got.ravel(), s=1, alpha=0.3)
          plt.plot([want.min(), want.max()], [want.min(), want.max()], "k--", lw=0.5)
          plt.xlabel("diffusers (PyTorch) output")
          plt.ylabel("converted (JAX) output")
          plt.title(f"relative max error {err:.1e}")
          plt.show()
          assert err < 1e-4, err
          """),
    md("""
          ## Images from the converted U-Net alone
          `Pipeline.from_converted` samples the converted U-Net as the base generator
          alone: images (one-frame videos), the centre frame a video model started from it
          would make. A quick look at what a conversion samples before training on it (a
          random U-Net's images are noise)."""),
    code("""
          from videofusion_jax.sampling import display

          images = videofusion_jax.Pipeline.from_converted(out, num_steps=SAMPLE_STEPS)(4)
          display.show_images(images[:, 0])  # uint8 (4, 1, H, W, 3): one frame each
          """),
    md("""
          ## VideoFusion with the converted base generator
          `config_snippet.py` sets `model.base` to the converted U-Net (and `data.channels`,
          `data.image_size`, `train.init_base_from`); `train.init_base_from` loads its
          weights into the base generator before the first step (the residual generator
          starts random). A short run, then videos from the EMA weights."""),
    code("""
          import importlib.util

          from configs import demo
          from videofusion_jax.sampling.generate import sample
          from videofusion_jax.training.loop import train

          config = demo.get_config()
          snippet = importlib.util.spec_from_file_location("snippet", out / "config_snippet.py")
          module = importlib.util.module_from_spec(snippet)
          snippet.loader.exec_module(module)
          module.apply(config)  # model.base, data.channels/image_size, train.init_base_from
          config.train.num_steps = NUM_STEPS
          config.train.batch_size = BATCH_SIZE
          config.train.log_every = max(1, NUM_STEPS // 6)
          config.train.checkpoint_every = NUM_STEPS
          config.optim.warmup_steps = min(config.optim.warmup_steps, NUM_STEPS // 4)
          config.sample.num_steps = SAMPLE_STEPS
          config.sample.num_videos = config.sample.batch_size = NUM_VIDEOS
          last = train(config, WORKDIR)
          print({k: round(v, 4) for k, v in last.items()})
          """),
    code("""
          from videofusion_jax.sampling import display
          from videofusion_jax.data import video_io

          paths = [p for p in sample(config, WORKDIR) if p.suffix == ".mp4"]
          display.show_videos(np.stack([video_io.read_video(p) for p in paths]),
                              titles=[p.name for p in paths], fps=config.sample.fps)
          """),
  ]


def evaluate():
  name = "evaluate.ipynb"
  return name, [
    header(
      name,
      "FVD and KVD between two folders of videos",
      """
          `videofusion_jax.metrics.evaluation.evaluate(real, fake, settings)` scores a
          folder of generated videos against a folder of real ones (or a data config, or
          a workdir to sample from: see docs/evaluation.md).

          **The protocol.** Clips of `num_frames = 16` frames read at `image_size` (folders
          as the training pipeline reads them: centre clip, short side resized, centre
          crop), quantised to uint8. Each frame is resized to 224x224 and mapped to
          [-1, 1]; the Kinetics-400 I3D gives 400 logits per video. **FVD** is the Fréchet
          distance between Gaussians fitted to the two feature sets; **KVD** the unbiased
          MMD² with the kernel $k(x, y) = (x \\cdot y / 400 + 1)^3$. Papers use 2048 videos
          per side; with fewer than 401 the covariance is rank-deficient and the numbers
          are only comparable with each other (a warning says so). Real features are
          cached, so scoring several fakes against the same real set decodes it once.

          Set `REAL_DIR` and `FAKE_DIRS` to your folders (e.g. `runs/demo/samples`);
          left empty, the notebook writes folders of synthetic clips and damaged copies of
          them, so you can see what the metrics react to.""",
    ),
    install("eval"),
    parameters("""
          REAL_DIR = ""           # a folder of real videos; "" = synthetic clips written below
          FAKE_DIRS = {}          # {"name": folder}; {} = the damaged copies written below
          NUM_VIDEOS = 6 if TINY else 128   # per side (papers: 2048)
          IMAGE_SIZE = 32 if TINY else 64   # clips are read at this size, then resized to 224
          BATCH_SIZE = 6 if TINY else 16
          DATA_DIR = "runs/eval_demo"
          """),
    SETUP,
    md("""
          ## Two folders of videos
          Without your folders: real clips of the built-in moving shapes, and as "generated"
          sets other clips of the same distribution, those clips with noise added, and those
          clips with their frames in random order (the same images, no coherent motion)."""),
    code("""
          from videofusion_jax.sampling import display
          from videofusion_jax.data import video_io
          from videofusion_jax.data.synthetic import SyntheticShapes

          def write_folder(folder, videos):
            for i, video in enumerate(videos):
              video_io.write_mp4(Path(folder) / f"{i:04d}.mp4", video)
            return str(folder)

          def clips(seed):
            shapes = SyntheticShapes(num_clips=NUM_VIDEOS, num_frames=16, image_size=IMAGE_SIZE,
                                     speed=1.0, seed=seed)
            return video_io.to_uint8(np.stack([shapes[i]["video"] for i in range(NUM_VIDEOS)]))

          if not REAL_DIR:
            rng = np.random.default_rng(0)
            held_out = clips(seed=1)  # the "generated" sets: other clips, then damaged copies
            noisy = np.clip(held_out + rng.normal(0, 40, held_out.shape), 0, 255).astype(np.uint8)
            shuffled = np.stack([v[rng.permutation(len(v))] for v in held_out])
            REAL_DIR = write_folder(f"{DATA_DIR}/real", clips(seed=0))
            FAKE_DIRS = {"same distribution": write_folder(f"{DATA_DIR}/other", held_out),
                         "noisy": write_folder(f"{DATA_DIR}/noisy", noisy),
                         "frames shuffled": write_folder(f"{DATA_DIR}/shuffled", shuffled)}
          folders = {"real": REAL_DIR, **FAKE_DIRS}
          first = [video_io.read_video(sorted(Path(f).glob("*.mp4"))[0]) for f in folders.values()]
          frames = min(len(v) for v in first)
          display.show_videos(np.stack([v[:frames] for v in first]), titles=list(folders))
          """),
    md("""
          ## Score each folder against the real one
          The progress bars count videos through I3D; the first call also extracts (and
          caches) the real features. Each call writes `metrics.json` (metrics, protocol,
          counts, versions) into the fake folder."""),
    code("""
          from videofusion_jax.metrics.evaluation import EvalSettings, evaluate

          settings = EvalSettings(num_videos=NUM_VIDEOS, num_frames=16, image_size=IMAGE_SIZE,
                                  batch_size=BATCH_SIZE, cache_dir=f"{DATA_DIR}/feature_cache")
          scores = {}
          for name, folder in FAKE_DIRS.items():
            result = evaluate(REAL_DIR, folder, settings)
            scores[name] = result["metrics"]
            print(f"{name:>20}: FVD {result['metrics']['fvd']:9.2f}  "
                  f"KVD {result['metrics']['kvd']:8.4f}  (real features cached: "
                  f"{result['real']['cache_hit']})")
          """),
    code("""
          import matplotlib.pyplot as plt

          fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
          for ax, metric in zip(axes, ("fvd", "kvd")):
            ax.barh(list(scores), [s[metric] for s in scores.values()], color="tab:blue")
            ax.set(title=f"{metric.upper()} against the real folder (lower is closer)",
                   xlabel=metric.upper())
          plt.tight_layout()
          plt.show()
          """),
    md("""
          Clips of the same distribution score lowest; noise moves every frame's features,
          and shuffled frames keep the images but break the motion, which I3D (a video
          network) sees. With a handful of videos the numbers are noisy: compare sets scored
          with the same settings, never with a paper's table (those use 2048 videos)."""),
  ]


NOTEBOOKS = (quickstart, decomposition, convert_and_sample, evaluate)


def build() -> dict[str, str]:
  """name -> notebook JSON text."""
  out = {}
  for make in NOTEBOOKS:
    name, cells = make()
    for i, cell in enumerate(cells):
      cell["id"] = f"cell-{i:02d}"
    nb = nbformat.v4.new_notebook(
      cells=cells,
      metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": [], "toc_visible": True},
        "accelerator": "GPU",
      },
    )
    nbformat.validate(nb)
    out[name] = nbformat.writes(nb) + "\n"
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--check",
    action="store_true",
    help="fail if a stored notebook differs from what this script writes",
  )
  args = parser.parse_args(argv)
  stale = []
  for name, text in build().items():
    path = HERE / name
    if args.check:
      if not path.is_file() or path.read_text() != text:
        stale.append(name)
    else:
      path.write_text(text)
      print(f"wrote {path}")
  if stale:
    print(f"out of date (run python colab/build_notebooks.py): {', '.join(stale)}")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
