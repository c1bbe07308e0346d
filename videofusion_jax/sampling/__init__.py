"""Sampling: from a trained workdir (or converted weights) to videos.

- `generate`: the jitted sampler per shape (`make_sample_fn`, `VideoSampler`) and
  `sample(config, workdir)`, what the sample CLI runs;
- `pipeline`: `Pipeline`, the same videos as arrays in Python (`videofusion_jax.Pipeline`);
- `converted_images`: `Pipeline.from_converted`, a converted image U-Net sampled alone;
- `outputs`: a Pipeline's uint8 videos saved (mp4, or PNG for one frame) and shown;
- `controls`: seed grid keys and files (`--vary`) and long videos (`--num_frames`);
- `conditions`: each video's class, prompt or CLIP embedding from the `sample` section;
- `prior`: text -> CLIP image embeddings with a diffusion prior;
- `cascade`, `superres_folders`: base videos, then the super-resolution stage;
- `run_config`: the config sampling runs with, the checkpoint's;
- `display`: videos inline in a notebook.
"""
