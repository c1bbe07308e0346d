"""Workdirs and data on GCS, in process, against the fake-gcs-server of conftest.py:
each piece that reads or writes a workdir or a data path, on gs:// and (where the two
must agree) on a local folder."""

import json
import struct
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from tests.data import footage
from videofusion_jax import storage
from videofusion_jax.checkpoint import CheckpointError, Checkpoints
from videofusion_jax.cli import ConfigError
from videofusion_jax.data import video_io
from videofusion_jax.data.folders import VideoFolder, resize_and_crop
from videofusion_jax.data.webvid import read_webvid_csv
from videofusion_jax.data.window_reader import VideoReader
from videofusion_jax.metric_writers import MetricWriter
from videofusion_jax.metrics.features import FeatureCache
from videofusion_jax.sampling.generate import write_samples

# Bounds a hang only: the emulator answers in milliseconds.
UPLOAD_DEADLINE_S = 60


def moving_square(n=6, h=20, w=24, shift=0):
  frames = np.zeros((n, h, w, 3), np.uint8)
  for i in range(n):
    frames[i, 4:12, 2 + 2 * i + shift : 10 + 2 * i + shift] = (30, 200, 90)
  return frames


def make_video_folder(root) -> None:
  """Two classes: an mp4 and a GIF copy of it (one video), a frame folder, a strip.png
  that is no video, and a hidden half-written file."""
  root = epath.Path(root)
  video_io.write_mp4(root / "a" / "one.mp4", moving_square())
  video_io.write_gif(root / "a" / "one.gif", moving_square())
  for i, frame in enumerate(moving_square(shift=3)):
    video_io.write_png(root / "b" / "two" / f"{i + 1:04d}.png", frame)
  video_io.write_png(root / "b" / "strip.png", moving_square()[0])
  (root / "a" / ".one.tmp.mp4").write_bytes(b"half")


def test_orbax_checkpoint_manager_saves_and_restores_a_tree_on_gcs(
  gs_prefix, tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  tree = {"w": jnp.arange(12.0).reshape(3, 4), "b": {"c": jnp.ones(5, jnp.bfloat16)}}
  directory = f"{gs_prefix}/checkpoints"
  mngr = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=2))
  for step in (1, 2, 3):
    mngr.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(jax.tree.map(lambda x: x * step, tree)),
        config=ocp.args.JsonSave({"step": step}),
      ),
    )
  mngr.wait_until_finished()
  mngr.close()
  reader = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
  assert reader.all_steps() == [2, 3]
  out = reader.restore(
    3,
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(jax.eval_shape(lambda: tree)), config=ocp.args.JsonRestore()
    ),
  )
  np.testing.assert_array_equal(out["state"]["w"], np.asarray(tree["w"]) * 3)
  assert out["state"]["b"]["c"].dtype == jnp.bfloat16 and out["config"] == {"step": 3}
  assert not (tmp_path / "gs:").exists()


def test_a_video_folder_on_gcs_gives_the_clips_of_the_same_local_folder(gs_prefix, tmp_path):
  make_video_folder(tmp_path / "videos")
  make_video_folder(f"{gs_prefix}/videos")
  local = VideoFolder(str(tmp_path / "videos"), num_frames=4, image_size=16)
  remote = VideoFolder(f"{gs_prefix}/videos", num_frames=4, image_size=16)
  assert [str(p) for p in remote.paths] == [
    f"{gs_prefix}/videos/a/one.mp4",
    f"{gs_prefix}/videos/b/two",
  ]
  assert remote.classes == local.classes == ["a", "b"] and remote.labels == [0, 1]
  for i in range(2):
    got, want = remote[i], local[i]
    assert got["key"] == want["key"] and got["label"] == want["label"]
    np.testing.assert_array_equal(got["video"], want["video"])
  assert not remote.skipped


def test_a_clip_of_a_long_mp4_on_gcs_decodes_only_its_window_as_the_local_copy(gs_prefix, tmp_path):
  # 20 s of footage at 24 fps, a keyframe every 24 frames; PyAV reads the object through
  # gcsfs's file object and seeks on it.
  length, gop = 480, 24
  local = footage.encode(
    tmp_path / "videos" / "pan.mp4", footage.film(length, 24, (36, 48)), 24, gop=gop
  )
  storage.upload(local, f"{gs_prefix}/videos/pan.mp4")
  span = 5 * 3 + 1  # 6 frames, stride 3
  for fps in (None, 8.0):  # by frame index, and by timestamp
    sources = [
      VideoFolder(root, num_frames=6, image_size=32, frame_stride=3, fps=fps, random_start=True)
      for root in (str(tmp_path / "videos"), f"{gs_prefix}/videos")
    ]
    for epoch in range(6):
      want, got = (source.read_clip(0, epoch) for source in sources)
      np.testing.assert_array_equal(got.frames, want.frames, err_msg=f"epoch {epoch}")
      assert got.times == want.times and got.decoded == want.decoded
      # From the keyframe before the window to its end, not the file's 480 frames.
      assert got.decoded <= gop + span < length, (fps, epoch, got.decoded)
    stats = sources[1].decode_stats
    assert stats.clips == 6 and stats.decoded_frames < 6 * (gop + span)
    assert not sources[1].skipped


@pytest.mark.parametrize(
  "name, kind, gop, bframes",
  [
    ("h264.mkv", "mkv", 20, None),
    ("bframes.avi", "avi", 9, 2),
    ("vp9.webm", "webm", 15, None),
    ("anim.gif", "gif", None, None),
  ],
)
def test_windows_of_other_containers_on_gcs_read_as_from_a_local_copy(
  gs_prefix, tmp_path, name, kind, gop, bframes
):
  """PyAV seeks the gcsfs file object of each container as it seeks a local file (GIF
  does not seek: decoded from the start, as locally)."""
  frames = footage.film(120 if kind != "gif" else 30, 24, (32, 40))
  local = tmp_path / name
  if kind == "gif":
    video_io.write_gif(local, frames)
  else:
    footage.encode(local, frames, 24, kind, gop=gop, bframes=bframes)
  storage.upload(local, f"{gs_prefix}/{name}")
  for indices in ([3, 5], [len(frames) // 2, len(frames) // 2 + 4], [len(frames) - 2]):
    with VideoReader(local) as want, VideoReader(f"{gs_prefix}/{name}") as got:
      assert got.num_frames == want.num_frames == len(frames)
      a, b = want.read(indices), got.read(indices)
    np.testing.assert_array_equal(np.stack(b.frames), np.stack(a.frames))
    assert b.times == a.times and b.decoded == a.decoded, (indices, b.decoded, a.decoded)
    if gop:  # from a keyframe before the window (an AVI with B-frames: maybe one more GOP)
      assert b.decoded <= 2 * gop + indices[-1] - indices[0] + 1 < len(frames), indices


def test_a_frame_folder_on_gcs_fetches_only_the_windows_images(gs_prefix):
  frames = footage.film(30, 25, (36, 48))
  for i, frame in enumerate(frames):
    video_io.write_png(f"{gs_prefix}/frames/clip/{i:04d}.png", frame)
  # Outside the centre window: fetching it would fail the clip.
  (epath.Path(gs_prefix) / "frames" / "clip" / "0001.png").write_bytes(b"not a png")
  source = VideoFolder(f"{gs_prefix}/frames", num_frames=4, image_size=36, frame_stride=2)
  window = source.read_clip(0)
  start = (30 - 7) // 2
  np.testing.assert_array_equal(
    window.frames, np.stack([resize_and_crop(f, 36) for f in frames[start : start + 7 : 2]])
  )
  assert window.decoded == 4 and not source.skipped


def test_a_webvid_csv_and_its_videos_on_gcs(gs_prefix):
  video_io.write_mp4(f"{gs_prefix}/webvid/videos/p1/11.mp4", moving_square())
  (epath.Path(gs_prefix) / "webvid" / "results.csv").write_text(
    "videoid,contentUrl,duration,page_dir,name\n"
    '11,u,PT1S,p1,"a square, moving"\n12,u,PT1S,p1,absent\n'
  )
  rows = read_webvid_csv(f"{gs_prefix}/webvid/results.csv", f"{gs_prefix}/webvid/videos")
  assert [str(p) for p in rows.paths] == [f"{gs_prefix}/webvid/videos/p1/11.mp4"]
  assert rows.captions == ["a square, moving"] and rows.absent == 1


def test_samples_written_to_gcs_read_back_as_written_locally(gs_prefix, tmp_path):
  videos = [
    moving_square(n=4, h=16, w=16)[None] / 127.5 - 1.0,
    moving_square(n=4, h=16, w=16, shift=2)[None] / 127.5 - 1.0,
  ]
  remote = write_samples(videos, epath.Path(gs_prefix) / "samples", fps=8, image_size=16)
  local = write_samples(videos, tmp_path / "samples", fps=8, image_size=16)
  assert [p.name for p in remote] == ["video_000.mp4", "video_001.mp4", "strip.png"]
  names = sorted(p.name for p in (epath.Path(gs_prefix) / "samples").iterdir())
  assert names == ["strip.png", "video_000.gif", "video_000.mp4", "video_001.gif", "video_001.mp4"]
  for r, l in zip(remote[:2], local[:2]):
    np.testing.assert_array_equal(video_io.read_video(r), video_io.read_video(l))
  assert remote[2].read_bytes() == local[2].read_bytes()
  with video_io.Mp4Stream(epath.Path(gs_prefix) / "samples" / "long.mp4") as out:
    out.write(moving_square(n=3, h=16, w=16))
    out.write(moving_square(n=3, h=16, w=16, shift=1))
  assert len(video_io.read_video(f"{gs_prefix}/samples/long.mp4")) == 6


def _tensorboard_scalars(folder) -> dict[int, float]:
  """step -> value of the `loss` scalars in the event files of `folder`, as TensorBoard
  shows them: events in time order, a purge marker (a resumed run's SessionLog START
  at step S) dropping what earlier files logged from S on."""
  from tensorboardX.proto import event_pb2

  events = []
  for path in epath.Path(folder).iterdir():
    data, offset = path.read_bytes(), 0
    while offset < len(data):
      (n,) = struct.unpack("Q", data[offset : offset + 8])
      events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + n]))
      offset += 12 + n + 4
  out = {}
  for event in sorted(events, key=lambda e: e.wall_time):
    if event.HasField("session_log") and event.session_log.status == 1:  # START
      out = {s: v for s, v in out.items() if s < event.step}
    out.update({event.step: v.simple_value for v in event.summary.value if v.tag == "loss"})
  return out


def test_metrics_on_gcs_hold_each_step_once_across_a_resume(gs_prefix, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  writer = MetricWriter(gs_prefix, upload_every_s=3600)
  for step in (1, 2, 3):
    writer.write(step, {"loss": step / 10})
  # A log step does not wait for GCS: nothing is uploaded until the interval or a flush.
  assert not (epath.Path(gs_prefix) / "metrics.jsonl").exists()
  writer.flush()  # as the train loop does after each checkpoint save
  assert logged_steps(gs_prefix) == [1, 2, 3]
  writer.close()
  resumed = MetricWriter(gs_prefix, resume_step=2)
  resumed.write(3, {"loss": 0.5})
  resumed.close()
  lines = [
    json.loads(l) for l in (epath.Path(gs_prefix) / "metrics.jsonl").read_text().splitlines()
  ]
  assert [(l["step"], l["loss"]) for l in lines] == [(1, 0.1), (2, 0.2), (3, 0.5)]
  events = list((epath.Path(gs_prefix) / "tensorboard").iterdir())
  assert len(events) == 2 and all(p.name.startswith("events.out.tfevents") for p in events)
  scalars = _tensorboard_scalars(f"{gs_prefix}/tensorboard")
  assert {k: round(v, 6) for k, v in scalars.items()} == {1: 0.1, 2: 0.2, 3: 0.5}
  assert not list(tmp_path.iterdir())  # nothing written to the working directory


def logged_steps(workdir) -> list[int]:
  path = epath.Path(workdir) / "metrics.jsonl"
  return [json.loads(l)["step"] for l in path.read_text().splitlines()] if path.exists() else []


def test_metrics_reach_gcs_in_the_background_while_the_run_goes_on(gs_prefix):
  """No flush, no close: the uploader thread's interval alone brings the lines and the
  event file to the bucket (a run killed later keeps them)."""
  writer = MetricWriter(gs_prefix, upload_every_s=0.05)
  for step in (1, 2):
    writer.write(step, {"loss": step / 10})
  deadline = time.monotonic() + UPLOAD_DEADLINE_S
  while logged_steps(gs_prefix) != [1, 2] and time.monotonic() < deadline:
    time.sleep(0.05)
  assert logged_steps(gs_prefix) == [1, 2]
  assert any((epath.Path(gs_prefix) / "tensorboard").iterdir())
  writer.close()


def test_the_real_feature_cache_on_gcs(gs_prefix):
  cache = FeatureCache(f"{gs_prefix}/cache")
  feats = {"i3d": np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)}
  path = cache.save("real-i3d", {"seed": 0}, feats)
  assert str(path).startswith(f"{gs_prefix}/cache/real-i3d-")
  np.testing.assert_array_equal(cache.load("real-i3d", {"seed": 0})["i3d"], feats["i3d"])
  assert cache.load("real-i3d", {"seed": 1}) is None
  assert json.loads(path.with_suffix(".json").read_text()) == {"seed": 0}


def test_a_checkpoint_step_moved_aside_on_gcs(gs_prefix):
  step = epath.Path(gs_prefix) / "checkpoints" / "4"
  (step / "state" / "array").write_bytes(b"x" * 10)
  (step / "_METADATA").write_text("{}")
  storage.move_tree(step, epath.Path(gs_prefix) / "checkpoints_corrupt" / "4")
  assert not step.exists()
  moved = epath.Path(gs_prefix) / "checkpoints_corrupt" / "4"
  assert (moved / "state" / "array").read_bytes() == b"x" * 10
  assert (moved / "_METADATA").read_text() == "{}"


def test_a_gcs_checkpoint_folder_is_probed_by_writing_an_object(gs_prefix):
  ckpt = Checkpoints(f"{gs_prefix}/run")
  assert str(ckpt.directory) == f"{gs_prefix}/run/checkpoints"
  assert ckpt.all_steps() == [] and not list(epath.Path(gs_prefix).glob("run/*"))
  ckpt.close()
  with pytest.raises(
    CheckpointError,
    match=r"^checkpoint folder gs://nobucket/run/"
    r"checkpoints is not writable: .*nobucket",
  ):
    Checkpoints("gs://nobucket/run")


@pytest.mark.parametrize(
  "path, message",
  [
    (
      "gs://nobucket/videos",
      "data.path=gs://nobucket/videos: bucket nobucket does not "
      "exist (or is not visible to these credentials); create it",
    ),
    ("gs:///videos", "data.path=gs:///videos: no bucket named; expected gs://BUCKET/PATH"),
  ],
)
def test_a_missing_bucket_is_one_line_naming_the_path(gcs, path, message):
  with pytest.raises(ConfigError) as error:
    VideoFolder(path, num_frames=4, image_size=16)
  assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_an_empty_prefix_of_an_existing_bucket_is_a_missing_folder(gs_prefix):
  with pytest.raises(
    FileNotFoundError,
    match=r"^data.path=gs://bucket/.*/nothing does not "
    r"exist or is not a folder \(on GCS a folder exists once an object",
  ):
    VideoFolder(f"{gs_prefix}/nothing", num_frames=4, image_size=16)


def test_a_converted_unet_folder_written_to_and_read_from_gcs(gs_prefix, tmp_path, monkeypatch):
  from flax import nnx

  from configs import demo
  from videofusion_jax.convert.converted import SNIPPET_FILE, load_converted, save_converted
  from videofusion_jax.models.from_config import model_spec
  from videofusion_jax.models.unet import UNet

  monkeypatch.chdir(tmp_path)
  config = model_spec(demo.get_config()).config.base_unet()
  params = nnx.to_pure_dict(nnx.state(UNet(config, rngs=nnx.Rngs(3)), nnx.Param))
  out = save_converted(f"{gs_prefix}/converted", params, config, source={"path": "test"})
  assert str(out) == f"{gs_prefix}/converted"
  assert f"init_base_from = '{gs_prefix}/converted'" in (out / SNIPPET_FILE).read_text()
  loaded_config, loaded = load_converted(f"{gs_prefix}/converted")
  assert loaded_config == config
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(np.asarray(a), b)
  with pytest.raises(FileExistsError, match=f"{gs_prefix}/converted exists and is not "):
    save_converted(f"{gs_prefix}/converted", params, config, source={})
  assert not list(tmp_path.iterdir())


def test_a_clip_cache_on_gcs_reads_as_the_local_one(gs_prefix, tmp_path):
  from videofusion_jax.training.prior_data import (
    read_clip_cache,
    synthetic_prior_data,
    write_clip_cache,
  )

  local = write_clip_cache(tmp_path / "cache.npz", synthetic_prior_data(6, 8, num_tokens=3))
  storage.upload(local, f"{gs_prefix}/cache.npz")
  a, b = read_clip_cache(local), read_clip_cache(f"{gs_prefix}/cache.npz")
  for name in ("image_embeds", "text_embeds", "text_hidden", "text_mask"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
  np.testing.assert_array_equal(a.null["text_hidden"], b.null["text_hidden"])


def test_the_object_stores_epath_serves_are_remote_and_other_urls_local():
  """One predicate for "an object store": what gets GCS handling (no appends, no
  folders) is also what a multi-host run accepts as a shared workdir."""
  for remote in ("gs://bucket/w", "s3://bucket/w"):
    assert storage.is_remote(remote)
  # epath reads these as local paths (it would write ./hdfs:/...): local, so a
  # multi-host run refuses them as a workdir.
  for local in ("/tmp/runs/w", "runs/w", "file:///tmp/runs/w", "weights/gs:/x", "hdfs://host/w"):
    assert not storage.is_remote(local)
