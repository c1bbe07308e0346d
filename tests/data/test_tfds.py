"""TFDS video datasets through grain, on TFDS's own mock data (`tfds.testing.mock_data`:
deterministic random examples with the dataset's real features, nothing downloaded).

BAIR runs without TensorFlow (its frames are an image Sequence); UCF101 and Moving MNIST
decode a TFDS Video feature with TensorFlow, so their tests run only where it is
installed (CI's `[tfds]` venv, .ci/run) and are skipped elsewhere.
"""

import importlib.util

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from configs import bair, moving_mnist, ucf101, ucf101_class  # noqa: E402
from videofusion_jax.data.pipeline import make_dataset  # noqa: E402
from videofusion_jax.data.sources import make_source  # noqa: E402
from videofusion_jax.data.tfds_source import NotPrepared, TfdsClips  # noqa: E402

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
needs_tensorflow = pytest.mark.skipif(
  not HAS_TENSORFLOW,
  reason="ucf101 and moving_mnist decode a TFDS Video feature with "
  "TensorFlow: pip install -e '.[tfds]' (CI runs them in a separate venv, .ci/run)",
)


def _raw_frames(name, split, index, key):
  return np.asarray(tfds.data_source(name, split=split, download=False)[index][key])


def _window_start(clip_uint8, frames, stride):
  """The start of the strided window of `frames` equal to the clip, or None."""
  span = (len(clip_uint8) - 1) * stride + 1
  for start in range(len(frames) - span + 1):
    if np.array_equal(frames[start : start + span : stride], clip_uint8):
      return start
  return None


def test_bair_clips_are_strided_windows_of_the_stored_frames_new_each_epoch(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    clips = TfdsClips(
      "bair_robot_pushing_small",
      split="train",
      data_dir=str(tmp_path),
      num_frames=4,
      image_size=64,
      frame_stride=3,
      random_start=True,
      seed=5,
    )
    assert len(clips) == 4 and clips.classes == []
    starts = set()
    for epoch in range(4):
      item = clips.at_epoch(2, epoch)
      assert item["video"].shape == (4, 64, 64, 3) and item["video"].dtype == np.float32
      assert item["label"] == 0 and item["key"] == "train/2"
      as_uint8 = np.round((item["video"] + 1.0) * 127.5).astype(np.uint8)
      start = _window_start(
        as_uint8, _raw_frames("bair_robot_pushing_small", "train", 2, "image_main"), stride=3
      )
      assert start is not None and 0 <= start <= 30 - 10
      starts.add(start)
      # The same (seed, epoch, index) gives the same window: a resumed run reads it.
      np.testing.assert_array_equal(clips.at_epoch(2, epoch)["video"], item["video"])
    assert len(starts) > 1  # a new window per epoch


def test_bair_config_through_the_pipeline_gives_disjoint_process_shares(tmp_path):
  config = bair.get_config(str(tmp_path))
  config.data.num_frames = 4
  config.data.image_size = 32  # resized from the stored 64x64
  with tfds.testing.mock_data(num_examples=8):
    source = make_source(config.data, seed=0)
    keys = []
    for process in range(2):
      it = iter(
        make_dataset(source, global_batch_size=4, seed=0, process_index=process, process_count=2)
      )
      batches = [next(it) for _ in range(2)]  # one epoch of this process's 4 clips
      for batch in batches:
        assert batch["video"].shape == (2, 4, 32, 32, 3)
        assert -1.0 <= batch["video"].min() and batch["video"].max() <= 1.0
      keys.append({str(k) for b in batches for k in b["key"]})
  assert keys[0].isdisjoint(keys[1])
  assert keys[0] | keys[1] == {f"train/{i}" for i in range(8)}


@pytest.mark.parametrize(
  "module,arg,name,classes",
  [
    (bair, "/d", "bair_robot_pushing_small", 0),
    (moving_mnist, "/d", "moving_mnist", 0),
    (ucf101, "tfds:/d", "ucf101/ucf101_1", 0),
    (ucf101_class, "tfds:/d", "ucf101/ucf101_1", 101),
  ],
)
def test_tfds_configs_describe_valid_models_for_their_clips(module, arg, name, classes):
  from videofusion_jax.models.from_config import videofusion_config

  config = module.get_config(arg)
  data = config.data
  assert (data.source, data.tfds_name, data.data_dir) == ("tfds", name, "/d")
  assert data.random_start and config.cond.num_classes == classes
  videofusion_config(config).check_video(
    (1, data.num_frames, data.image_size, data.image_size, data.channels)
  )
  assert ucf101.get_config("tfds").data.data_dir == ""  # TFDS's default folder


def test_missing_data_dir_names_the_tfds_build_command(tmp_path):
  config = bair.get_config(str(tmp_path / "absent"))
  with pytest.raises(NotPrepared) as raised:
    make_source(config.data, seed=0)
  message = str(raised.value)
  assert "\n" not in message
  assert f"data.data_dir={tmp_path / 'absent'}" in message
  assert "tfds build bair_robot_pushing_small --data_dir=DIR --file_format=array_record" in message
  assert f"copy DIR/bair_robot_pushing_small into {tmp_path / 'absent'}/" in message
  assert not (tmp_path / "absent").exists()  # nothing downloaded or created


def test_channels_that_do_not_match_the_dataset_are_named(tmp_path):
  config = bair.get_config(str(tmp_path))
  config.data.channels = 1
  with tfds.testing.mock_data(num_examples=2):
    with pytest.raises(
      ValueError, match="data.channels=1 but bair_robot_pushing_small's frames have 3 channels"
    ):
      make_source(config.data, seed=0)


@pytest.mark.skipif(HAS_TENSORFLOW, reason="says what to install where TensorFlow is not")
def test_video_feature_datasets_without_tensorflow_say_what_to_install(tmp_path):
  config = ucf101.get_config(f"tfds:{tmp_path}")
  with pytest.raises(
    ValueError,
    match=r"registers this dataset only where TensorFlow is "
    r"installed.*pip install -e '\.\[tfds\]'",
  ):
    make_source(config.data, seed=0)


@needs_tensorflow
def test_ucf101_labels_follow_the_folder_layouts_class_order(tmp_path):
  config = ucf101_class.get_config(f"tfds:{tmp_path}")
  config.data.num_frames = 2  # mock videos have a random frame count and size
  config.data.image_size = 8
  with tfds.testing.mock_data(num_examples=6):
    source = make_source(config.data, seed=0)
    names = list(
      tfds.data_source("ucf101/ucf101_1", split="train", download=False)
      .dataset_info.features["label"]
      .names
    )
    assert len(source.classes) == config.cond.num_classes == 101
    checked = 0
    for i in range(len(source)):
      item = source[i]
      if item["key"] != f"train/{i}":
        continue  # skipped as shorter than a clip
      raw = _raw_frames("ucf101/ucf101_1", "train", i, "label")
      assert sorted(names)[item["label"]] == names[int(raw)]
      assert item["video"].shape == (2, 8, 8, 3)
      checked += 1
  assert checked > 0
  # TFDS's order is not the sorted one: the remap is not the identity.
  assert names != sorted(names)


@needs_tensorflow
def test_moving_mnist_clips_are_grey(tmp_path):
  config = moving_mnist.get_config(str(tmp_path))
  config.data.num_frames = 4
  with tfds.testing.mock_data(num_examples=2):
    source = make_source(config.data, seed=0)
    item = source.at_epoch(1, 3)
    frames = _raw_frames("moving_mnist", "test", 1, "image_sequence")
  assert item["video"].shape == (4, 64, 64, 1)
  as_uint8 = np.round((item["video"] + 1.0) * 127.5).astype(np.uint8)
  assert _window_start(as_uint8, frames, stride=1) is not None
