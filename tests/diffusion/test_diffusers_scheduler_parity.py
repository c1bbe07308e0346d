"""Our DDIM / DDPM samplers against diffusers' schedulers, step by step.

Same deterministic fake model on both sides (its x0 estimate is 1.3 tanh(z): eps =
(z - sqrt(ab_t) 1.3 tanh(z)) / sqrt(1 - ab_t), variance values 0.9 tanh(z)), the same z_T
and the same per-step noise (ours: `draw_noise` of the step's folded keys, standard
mode, lam = 0, handed to diffusers), cosine ("squaredcos_cap_v2") and linear betas.
The schedulers get our betas (and their products), so the comparison is of the update
rules; the schedules themselves are compared apart. DDIM runs diffusers in float32 and
agrees to 1e-5 of the sample's scale. The 1000-step DDPM chains run diffusers in
float64, the exact update rule: ours (float32, coefficients from float64) is within
1.3e-5 of it on the cosine schedule, while diffusers' own float32 run is 9e-5 away from
its float64 one (1 - alpha_bar near t = 0 has few digits in float32).

Conventions found (asserted below, not hidden):
- timesteps: ours are diffusers' `timestep_spacing="leading"` with `steps_offset=0`
  (T=1000, 50 steps: 980 ... 0); "trailing" (999 ... 19) is not what we sample;
- the last DDIM step goes to alpha_bar = 1: `set_alpha_to_one=True`;
- clipping x0 re-derives eps from the clipped x0 in our DDIM: diffusers'
  `use_clipped_model_output=True`; its default (False) keeps the network's eps and gives
  a different sample once x0 is clipped;
- DDPM: `variance_type="fixed_small"`, `clip_sample=False` is ours with clip_x0=False;
  UnCLIPScheduler ("learned_range", clip_sample=True) is ours with
  variance="learned_range", clip_x0=True. UnCLIPScheduler's log variance at t = 0 is
  log(0) (ours is clipped to entry 1), but t = 0 adds no noise, so samples agree;
- schedules: diffusers computes betas and their cumulative product in float32, we in
  float64 then cast; alpha_bar agrees to 2e-5 relative (1.3e-5 at t = 999, where it is
  2.4e-9 on the cosine schedule), betas to 1e-6.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers.schedulers import scheduling_ddpm, scheduling_unclip  # noqa: E402

from videofusion_jax import diffusion  # noqa: E402
from videofusion_jax.diffusion import samplers  # noqa: E402
from videofusion_jax.diffusion.noise_sharing import draw_noise, fold_in  # noqa: E402

SHAPE = (1, 2, 4, 4, 3)  # (B, N, H, W, C): a video, as our samplers take
BETAS = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
KEYS = (jax.random.key(1), jax.random.key(2))


def _fake(schedule):
  ab = schedule.alphas_cumprod

  @jax.jit
  def fake(z, t):  # t (B,) -> eps and variance values (B, N, H, W, C)
    a = ab[t][:, None, None, None, None]  # x0 estimate 1.3 tanh(z): clipping matters
    return (z - jnp.sqrt(a) * 1.3 * jnp.tanh(z)) / jnp.sqrt(1.0 - a), 0.9 * jnp.tanh(z)

  return fake


def _noise(t=None):
  """Ours: z_T (t None) or the fresh noise of the step leaving t, standard mode."""
  base, residual = KEYS if t is None else (fold_in(KEYS[0], t), fold_in(KEYS[1], t))
  return draw_noise("standard", base, residual, SHAPE, 0.0)


def _scheduler(cls, schedule, name, float64=False, **kw):
  """A diffusers scheduler on our schedule: float32 arrays, or float64 ones from our betas."""
  sched = cls(num_train_timesteps=schedule.num_timesteps, beta_schedule=BETAS[name], **kw)
  if float64:
    betas = np.asarray(schedule.betas, np.float64)
    arrays = {"betas": betas, "alphas": 1.0 - betas, "alphas_cumprod": np.cumprod(1.0 - betas)}
    sched.one = torch.tensor(1.0, dtype=torch.float64)
  else:
    arrays = {k: np.array(getattr(schedule, k)) for k in ("betas", "alphas", "alphas_cumprod")}
  for attr, value in arrays.items():
    setattr(sched, attr, torch.from_numpy(value))
  return sched


def _t(z, dtype=np.float32):
  return torch.from_numpy(np.asarray(z).astype(dtype))


def _close(got, want, tol=1e-5):
  got, want = np.asarray(got), np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=tol * max(1.0, np.abs(want).max()))


def _diffusers_ddim(sched, fake, eta, clipped_eps=True):
  z, x0s = _t(_noise()), []
  for t in sched.timesteps.tolist():
    eps, _ = fake(jnp.asarray(z.numpy()), jnp.full((SHAPE[0],), t, jnp.int32))
    out = sched.step(
      _t(eps),
      t,
      z,
      eta=eta,
      use_clipped_model_output=clipped_eps,
      variance_noise=_t(_noise(t)) if eta > 0 else None,
    )
    z = out.prev_sample
    x0s.append(out.pred_original_sample.numpy())
  return z.numpy(), np.stack(x0s)


@pytest.mark.parametrize(
  "name,eta,clip",
  [("cosine", 0.0, True), ("cosine", 1.0, True), ("linear", 0.0, False), ("linear", 1.0, True)],
)
def test_ddim_matches_diffusers_step_by_step(name, eta, clip):
  schedule = diffusion.make_schedule(name, 1000)
  fake = _fake(schedule)
  sched = _scheduler(
    diffusers.DDIMScheduler,
    schedule,
    name,
    clip_sample=clip,
    set_alpha_to_one=True,
    steps_offset=0,
    timestep_spacing="leading",
  )
  sched.set_timesteps(20)
  np.testing.assert_array_equal(
    sched.timesteps.numpy(), diffusion.schedules.ddim_timesteps(1000, 20)
  )
  want, want_x0 = _diffusers_ddim(sched, fake, eta)
  got, got_x0 = samplers.ddim_sample(
    lambda z, t: fake(z, t)[0],
    schedule,
    SHAPE,
    *KEYS,
    lam=0.0,
    num_steps=20,
    eta=eta,
    clip_x0=clip,
    noise_mode="standard",
    return_trajectory=True,
  )
  _close(got_x0, want_x0)
  _close(got, want)
  if clip:  # diffusers' default keeps the unclipped eps: another sampler once x0 clips
    assert np.abs(want_x0).max() >= 1.0
    default, _ = _diffusers_ddim(sched, fake, eta, clipped_eps=False)
    assert np.abs(default - want).max() > 1e-3


def test_timestep_spacing_and_final_alpha_conventions():
  ours = diffusion.schedules.ddim_timesteps(1000, 50)
  for spacing, equal in (("leading", True), ("trailing", False)):
    sched = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=0)
    sched.set_timesteps(50)
    assert np.array_equal(sched.timesteps.numpy(), ours) == equal, spacing
  assert (ours[0], ours[-1]) == (980, 0)
  assert float(diffusers.DDIMScheduler(set_alpha_to_one=True).final_alpha_cumprod) == 1.0


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedules_match_diffusers_betas(name):
  schedule = diffusion.make_schedule(name, 1000)
  sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=BETAS[name])
  np.testing.assert_allclose(np.asarray(schedule.betas), sched.betas.numpy(), rtol=1e-6)
  np.testing.assert_allclose(
    np.asarray(schedule.alphas_cumprod), sched.alphas_cumprod.numpy(), rtol=2e-5
  )


def _patched_noise(monkeypatch, module):
  """diffusers draws DDPM noise itself: hand it ours for the step being taken."""
  current = {}
  monkeypatch.setattr(module, "randn_tensor", lambda shape, **kw: current["noise"].reshape(shape))
  return current


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_ddpm_fixed_small_matches_diffusers(name, monkeypatch):
  schedule = diffusion.make_schedule(name, 1000)
  fake = _fake(schedule)
  sched = _scheduler(
    diffusers.DDPMScheduler,
    schedule,
    name,
    float64=True,
    variance_type="fixed_small",
    clip_sample=False,
  )
  sched.set_timesteps(1000)
  current = _patched_noise(monkeypatch, scheduling_ddpm)
  z = _t(_noise(), np.float64)
  for t in sched.timesteps.tolist():
    eps, _ = fake(jnp.asarray(z.numpy(), jnp.float32), jnp.full((SHAPE[0],), t, jnp.int32))
    current["noise"] = _t(_noise(t), np.float64)
    z = sched.step(_t(eps, np.float64), t, z).prev_sample
  got = samplers.ddpm_sample(
    lambda z, t: fake(z, t)[0],
    schedule,
    SHAPE,
    *KEYS,
    lam=0.0,
    variance="fixed_small",
    noise_mode="standard",
  )
  _close(got, z.numpy(), tol=3e-5)


def test_ddpm_learned_range_matches_unclip_scheduler(monkeypatch):
  schedule = diffusion.make_schedule("cosine", 1000)
  fake = _fake(schedule)
  sched = _scheduler(
    diffusers.UnCLIPScheduler,
    schedule,
    "cosine",
    float64=True,
    variance_type="learned_range",
    clip_sample=True,
    clip_sample_range=1.0,
  )
  sched.set_timesteps(1000)
  np.testing.assert_array_equal(sched.timesteps.numpy(), np.arange(999, -1, -1))
  current = _patched_noise(monkeypatch, scheduling_unclip)
  channels_first = lambda a: torch.from_numpy(np.moveaxis(np.asarray(a, np.float64), -1, 2))
  channels_last = lambda a: np.moveaxis(a.numpy(), 2, -1)
  z = channels_first(_noise())  # (B, N, C, H, W): diffusers splits eps | variance on dim 1..
  z = z.reshape(-1, *z.shape[2:])  # .. so frames fold into the batch: (B*N, C, H, W)
  ts = sched.timesteps.tolist()
  for i, t in enumerate(ts):
    zz = channels_last(z.reshape(SHAPE[0], SHAPE[1], *z.shape[1:]))
    eps, v = fake(jnp.asarray(zz, jnp.float32), jnp.full((SHAPE[0],), t, jnp.int32))
    out = torch.cat([channels_first(eps), channels_first(v)], dim=2).reshape(
      z.shape[0], 2 * z.shape[1], *z.shape[2:]
    )
    current["noise"] = channels_first(_noise(t)).reshape(z.shape)
    z = sched.step(out, t, z, prev_timestep=ts[i + 1] if i + 1 < len(ts) else None).prev_sample
  want = channels_last(z.reshape(SHAPE[0], SHAPE[1], *z.shape[1:]))
  got = samplers.ddpm_sample(
    fake,
    schedule,
    SHAPE,
    *KEYS,
    lam=0.0,
    variance="learned_range",
    clip_x0=True,
    noise_mode="standard",
  )
  _close(got, want, tol=3e-5)
