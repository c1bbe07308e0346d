"""Training the diffusion prior on a synthetic CLIP cache: it learns the function that
ties image to text embeddings, its learned null gives the unconditional distribution,
it resumes exactly, and bad caches fail naming the path and the fix."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from configs import prior_synthetic
from videofusion_jax.sampling.prior import load_prior, sample_image_embeds
from videofusion_jax.training.prior_data import (
  mask_from_tokens,
  read_clip_cache,
  synthetic_prior_data,
  write_clip_cache,
)
from videofusion_jax.training.prior_loop import train_prior

DIM, TOKENS = 16, 4
ROOT = Path(__file__).resolve().parents[1]


def _config(cache, **train):
  c = prior_synthetic.get_config()
  c.data.source = "clip_cache"
  c.data.clip_cache = str(cache)
  for k, v in train.items():
    c.train[k] = v
  return c


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  path = tmp_path_factory.mktemp("prior_cache") / "clip.npz"
  return write_clip_cache(path, synthetic_prior_data(512, DIM, num_tokens=TOKENS, seed=0))


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("prior_run")
  metrics = train_prior(_config(cache, num_steps=300), str(workdir))
  return workdir, metrics


def _errors(out, held_out, train):
  mean, std = train.stats()
  err = np.mean(((np.asarray(out) - held_out.image_embeds) / std) ** 2)
  baseline = np.mean(((mean - held_out.image_embeds) / std) ** 2)  # predict the mean
  return err, baseline


def test_prior_learns_the_text_to_image_function(trained, cache):
  workdir, metrics = trained
  assert metrics["loss"] < 0.3
  prior, schedule = load_prior(workdir)
  held_out = synthetic_prior_data(256, DIM, num_tokens=TOKENS, seed=99)  # same function
  out = sample_image_embeds(
    prior,
    held_out.text_embeds,
    held_out.text_hidden,
    held_out.text_mask,
    key=jax.random.key(0),
    guidance_scale=1.0,
    schedule=schedule,
    num_steps=20,
  )
  err, baseline = _errors(out, held_out, read_clip_cache(cache))
  assert err < 0.25 * baseline, (err, baseline)
  # Scale 0 = the learned null alone: samples of the marginal, unrelated to each text
  # (a random draw is about twice as far from the target as the mean is).
  uncond = sample_image_embeds(
    prior,
    held_out.text_embeds,
    held_out.text_hidden,
    held_out.text_mask,
    key=jax.random.key(0),
    guidance_scale=0.0,
    schedule=schedule,
    num_steps=20,
  )
  err0, _ = _errors(uncond, held_out, read_clip_cache(cache))
  assert err0 > 0.8 * baseline, (err0, baseline)


def test_resume_continues_as_one_run(cache, tmp_path):
  straight, split = tmp_path / "straight", tmp_path / "split"
  train_prior(_config(cache, num_steps=6, checkpoint_every=3, log_every=3), str(straight))
  train_prior(_config(cache, num_steps=3, checkpoint_every=3, log_every=3), str(split))
  train_prior(_config(cache, num_steps=6, checkpoint_every=3, log_every=3), str(split))
  a, _ = load_prior(straight)
  b, _ = load_prior(split)
  la = jax.tree.leaves(jax.tree.map(np.asarray, nnx.state(a)))
  lb = jax.tree.leaves(jax.tree.map(np.asarray, nnx.state(b)))
  assert len(la) == len(lb) > 20
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)
  # The statistics are the data's, untouched by the optimizer.
  mean, std = read_clip_cache(cache).stats()
  np.testing.assert_allclose(a.clip_mean[...], mean, rtol=1e-6)
  np.testing.assert_allclose(a.clip_std[...], std, rtol=1e-6)


def test_class_conditioned_prior_samples_its_class(tmp_path):
  c = prior_synthetic.get_config()  # synthetic source: one centre per class
  c.model.num_classes, c.model.num_embeddings = 3, 0
  c.model.encoder_hid_proj_type = None
  c.train.num_steps = 150
  train_prior(c, str(tmp_path))
  prior, schedule = load_prior(tmp_path)
  data = synthetic_prior_data(512, DIM, num_classes=3)
  centres = np.stack([data.image_embeds[data.class_ids == k].mean(0) for k in range(3)])
  labels = np.repeat(np.arange(3), 10)
  out = np.asarray(
    sample_image_embeds(
      prior,
      class_labels=labels,
      key=jax.random.key(0),
      guidance_scale=3.0,
      schedule=schedule,
      num_steps=20,
    )
  )
  nearest = np.argmin(((out[:, None] - centres[None]) ** 2).sum(-1), axis=1)
  assert (nearest == labels).mean() > 0.9
  with pytest.raises(ValueError, match="out of range 0..2"):
    sample_image_embeds(prior, class_labels=[3], key=jax.random.key(0), schedule=schedule)


def test_empty_text_dropout_without_a_learned_null(cache, tmp_path):
  """model.learned_null=False: dropped captions become the cache's empty-text encoding,
  which is then the unconditional input of guidance (Karlo's convention)."""
  c = _config(cache, num_steps=150, cond_drop_prob=0.2)
  c.model.learned_null = False
  train_prior(c, str(tmp_path))
  prior, schedule = load_prior(tmp_path)
  assert prior.null_proj_embedding is None
  train = read_clip_cache(cache)
  held_out = synthetic_prior_data(128, DIM, num_tokens=TOKENS, seed=98)
  args = (prior, held_out.text_embeds, held_out.text_hidden, held_out.text_mask)
  kw = dict(key=jax.random.key(0), schedule=schedule, num_steps=20, null_cond=train.null)
  err1, baseline = _errors(sample_image_embeds(*args, guidance_scale=1.0, **kw), held_out, train)
  err0, _ = _errors(sample_image_embeds(*args, guidance_scale=0.0, **kw), held_out, train)
  assert err1 < 0.5 * baseline < err0, (err1, baseline, err0)


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_cli_trains_the_synthetic_config(tmp_path):
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.train_prior",
      "--config=configs/prior_synthetic.py",
      f"--workdir={tmp_path}",
      "--config.train.num_steps=2",
      "--config.train.log_every=1",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert run.returncode == 0, run.stderr[-2000:]
  assert "prior training done" in run.stdout and "loss=" in run.stdout
  assert (tmp_path / "checkpoints" / "2").is_dir()
  prior, schedule = load_prior(tmp_path)
  assert prior.config.embedding_dim == DIM and schedule.num_timesteps == 100


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_cli_bad_field_is_one_line_with_exit_2_before_the_workdir_exists(tmp_path):
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "videofusion_jax.train_prior",
      "--config=configs/prior_synthetic.py",
      f"--workdir={tmp_path / 'w'}",
      "--config.train.batch_size=0",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert run.returncode == 2, run.stderr[-2000:]
  assert run.stderr.strip().splitlines()[-1] == "error: train.batch_size=0; expected >= 1"
  assert "Traceback" not in run.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.flow  # a CLI subprocess: make test-flows
def test_cli_sigterm_saves_and_exits_with_the_preempted_code(tmp_path):
  proc = subprocess.Popen(
    [
      sys.executable,
      "-m",
      "videofusion_jax.train_prior",
      "--config=configs/prior_synthetic.py",
      f"--workdir={tmp_path}",
      "--config.train.num_steps=100000",
      "--config.train.log_every=1",
      "--config.train.checkpoint_every=100000",
      "--config.train.tensorboard=False",
    ],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    cwd=ROOT,
  )
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.monotonic() + 600  # bounds a hang only
  while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    assert time.monotonic() < deadline, "no step logged"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 75, err[-2000:]
  assert "prior stopped at step" in out and "the same command resumes" in out
  saved = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
  assert len(saved) == 1 and 2 <= saved[0] < 100000


def test_missing_cache_names_the_path_and_how_to_make_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="absent.npz.*precompute"):
    train_prior(_config(tmp_path / "absent.npz"), str(tmp_path / "w"))


def test_a_cache_that_does_not_fit_the_model_is_named(tmp_path):
  path = write_clip_cache(tmp_path / "c.npz", synthetic_prior_data(8, 12, num_tokens=TOKENS))
  with pytest.raises(ValueError, match="image_embeds are 12-d; model.embedding_dim=16"):
    train_prior(_config(path), str(tmp_path / "w"))
  data = synthetic_prior_data(8, DIM)  # no text_hidden
  path = write_clip_cache(tmp_path / "d.npz", data)
  with pytest.raises(ValueError, match="needs text_hidden"):
    train_prior(_config(path), str(tmp_path / "w"))


def test_mask_from_clip_tokens_ends_at_the_first_end_of_text():
  eot = 49407
  tokens = np.array(
    [
      [eot - 1, 320, 1125, eot, eot, eot],  # padded with end-of-text
      [eot - 1, 320, eot, 0, 0, 0],
    ]
  )  # padded with zeros
  np.testing.assert_array_equal(mask_from_tokens(tokens), [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]])
