"""One-off data preparation commands (`python -m videofusion_jax.tools.NAME`)."""
