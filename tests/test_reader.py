"""The tf.data reader gives back the source frames, as uint8 RGB, and caches them when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gan.data import dataset_shape, image_dataset, parse_record
from synthwave.settings import FrameSettings
from tasks.frames import iter_frames
from tasks.shards import write_video_shards

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
# Raw sampling: milk.mkv is one image to curation (tasks/curate.py).
PNG = FrameSettings(every=5, dedupe=False)  # the default size: 180x320 from milk.mkv's 16:9 middle
JPEG = FrameSettings(every=5, image_format="jpeg", dedupe=False)


def clip(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"sample clip {path} is absent (see shared/videos/README.md)")
    return path


def shard_paths(out: Path, manifest: dict) -> list[str]:
    return [str(out / shard["file"]) for shard in manifest["shards"]]


@pytest.fixture(scope="module")
def milk_png(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("png")
    paths = shard_paths(out, write_video_shards(clip("milk.mkv"), "milk", PNG, 0.2, out))
    assert len(paths) >= 2
    return paths


def as_uint8(batches) -> np.ndarray:
    images = np.concatenate([batch.numpy() for batch in batches])
    assert images.dtype == np.uint8  # scaled to [-1, 1] by the step, on the device
    return images


def source_rgb(settings: FrameSettings) -> np.ndarray:
    return np.stack([frame.image[..., ::-1] for frame in iter_frames(clip("milk.mkv"), settings)])


def test_png_round_trip_is_exact_and_rgb(milk_png):
    dataset = image_dataset(milk_png, 4, shuffle_buffer=0, repeat=False, drop_remainder=False)
    got = as_uint8(dataset)
    expected = source_rgb(PNG)
    assert got.shape == expected.shape == (11, 180, 320, 3)
    # Shards are interleaved, so compare as multisets of images.
    assert sorted(image.tobytes() for image in got) == sorted(image.tobytes() for image in expected)


def test_jpeg_round_trip_within_tolerance(tmp_path):
    paths = shard_paths(tmp_path, write_video_shards(clip("milk.mkv"), "milk", JPEG, 100, tmp_path))
    got = as_uint8(image_dataset(paths, 3, shuffle_buffer=0, repeat=False, drop_remainder=False)).astype(int)
    expected = source_rgb(JPEG).astype(int)
    assert np.abs(got - expected).mean() < 2.0
    assert np.abs(got - expected[..., ::-1]).mean() > 4 * np.abs(got - expected).mean()  # not BGR


def test_batches_have_a_static_shape_and_repeat(milk_png):
    assert dataset_shape(milk_png) == (180, 320, 3)
    dataset = image_dataset(milk_png, 4, seed=1)
    assert dataset.element_spec.shape == (4, 180, 320, 3)
    assert len(list(dataset.take(6))) == 6  # 24 images from 11: it repeats


def test_a_seed_makes_the_order_reproducible(milk_png):
    def first_batches(seed):
        return as_uint8(image_dataset(milk_png, 4, shuffle_buffer=16, seed=seed).take(3))

    np.testing.assert_array_equal(first_batches(7), first_batches(7))
    assert not np.array_equal(first_batches(7), first_batches(8))


def test_parse_record_reads_every_feature(milk_png):
    features = parse_record(next(iter(tf.data.TFRecordDataset(milk_png[0]))))
    assert features["video_key"].numpy() == b"milk"
    assert (int(features["height"]), int(features["width"]), int(features["channels"])) == (180, 320, 3)
    assert int(features["frame_index"]) == 0 and float(features["timestamp_s"]) == 0.0


def test_mixed_sizes_missing_and_empty_are_refused(milk_png, tmp_path):
    small = shard_paths(tmp_path, write_video_shards(clip("milk.mkv"), "milk", FrameSettings(downsample=4), 1, tmp_path))
    with pytest.raises(ValueError, match="180x320.*120x160"):
        dataset_shape(milk_png + small)
    with pytest.raises(ValueError, match="different image sizes"):
        image_dataset(milk_png + small, 4)
    with pytest.raises(ValueError, match="no shard files"):
        image_dataset([], 4)
    (tmp_path / "empty.tfrecord").touch()
    with pytest.raises(ValueError, match="empty.tfrecord: shard has no records"):
        dataset_shape([str(tmp_path / "empty.tfrecord")])
    with pytest.raises(FileNotFoundError, match="nope.tfrecord"):
        dataset_shape([str(tmp_path / "nope.tfrecord")])


def test_the_cache_serves_later_epochs_without_reading_the_shards(milk_png, tmp_path):
    """Epoch 1 decodes the shards; with the shards gone, the cache still serves epochs 2 and 3
    (the same frames, reshuffled), where streaming fails to reopen them."""
    copies = []
    for path in milk_png:
        copies.append(str(tmp_path / Path(path).name))
        Path(copies[-1]).write_bytes(Path(path).read_bytes())
    expected = sorted(image.tobytes() for image in as_uint8(image_dataset(milk_png, 11, shuffle_buffer=0, repeat=False)))
    for cache in (True, False):
        batches = iter(image_dataset(copies, 1, shuffle_buffer=4, seed=1, cache=cache))
        first = [next(batches) for _ in range(11)]
        for path in copies:
            Path(path).unlink()
        if cache:
            later = [as_uint8([next(batches) for _ in range(11)]) for _ in range(2)]
            assert [sorted(image.tobytes() for image in epoch) for epoch in later] == [expected, expected]
            assert not np.array_equal(later[0], later[1])  # reshuffled each epoch
        else:
            with pytest.raises(tf.errors.NotFoundError):
                [next(batches) for _ in range(22)]
        for path, copy in zip(milk_png, copies, strict=True):
            Path(copy).write_bytes(Path(path).read_bytes())
        assert sorted(image.tobytes() for image in as_uint8(first)) == expected
