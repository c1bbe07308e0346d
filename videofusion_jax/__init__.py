"""VideoFusion (decomposed video diffusion) in JAX / Flax NNX.

`videofusion_jax.Pipeline` samples videos from a trained workdir in Python
(`sampling/pipeline.py`). It is imported on first use, so `import videofusion_jax` stays cheap
for the command-line tools, which do not need it.
"""


def __getattr__(name: str):
  if name == "Pipeline":
    from videofusion_jax.sampling.pipeline import Pipeline  # pylint: disable=import-outside-toplevel

    return Pipeline
  raise AttributeError(f"module 'videofusion_jax' has no attribute {name!r}")
