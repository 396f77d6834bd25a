"""The training input: frame shards -> batches of uint8 RGB images.

Batches stay uint8 up to the step, which scales them to [-1, 1] on the device: a quarter
of float32's bytes to copy to a GPU, and no float work on the reader's cores.

Streams from the TFRecord files (interleaved, shuffled as encoded bytes, decoded in
parallel). With `cache`, each frame is decoded once, in the first epoch, and later epochs
come from RAM (tf.data's in-memory cache, shuffled as decoded frames): decoding is the
reader's cost (docs/training-loop.md). The records hold PNG/JPEG made by cv2.imencode from
BGR frames, and such files decode to RGB, which is what the model sees.

`split` applies the dataset's holdout (gan/index.py's Holdout): "train" batches never
contain a held-out frame, "holdout" yields only those, "all" ignores the split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf

from synthwave import records
from gan.index import Holdout

FEATURES = {
    records.IMAGE: tf.io.FixedLenFeature([], tf.string),
    records.FORMAT: tf.io.FixedLenFeature([], tf.string),
    records.HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    records.WIDTH: tf.io.FixedLenFeature([], tf.int64),
    records.CHANNELS: tf.io.FixedLenFeature([], tf.int64),
    records.VIDEO_KEY: tf.io.FixedLenFeature([], tf.string),
    records.FRAME_INDEX: tf.io.FixedLenFeature([], tf.int64),
    records.TIMESTAMP_S: tf.io.FixedLenFeature([], tf.float32),
}
_IMAGE_ONLY = {records.IMAGE: FEATURES[records.IMAGE]}
_FRAME_ID = {name: FEATURES[name] for name in (records.VIDEO_KEY, records.FRAME_INDEX)}
Split = Literal["all", "train", "holdout"]
_MAX_OPEN_SHARDS = 16  # files read at once: enough to mix videos, few enough buffers


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """All features of one serialised frame record."""
    return tf.io.parse_single_example(serialized, FEATURES)


def _frame_name(serialized: tf.Tensor) -> tf.Tensor:
    """"<video_key>/<frame_index>" of one serialised record."""
    frame = tf.io.parse_single_example(serialized, _FRAME_ID)
    return tf.strings.join([frame[records.VIDEO_KEY], tf.strings.as_string(frame[records.FRAME_INDEX])], "/")


def held_out(serialized: tf.Tensor, holdout: Holdout) -> tf.Tensor:
    """Whether one serialised record is a held-out frame (the rule in gan/index.py's Holdout)."""
    return tf.strings.to_hash_bucket_fast(_frame_name(serialized), 1000) < holdout.per_mille


def _not_excluded(holdout: Holdout):
    """A filter passing the records whose frame is not in holdout.excluded."""
    names = sorted(holdout.excluded)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(names, tf.ones(len(names), tf.int64)), 0)
    return lambda serialized: table.lookup(_frame_name(serialized)) == 0


def _first_shape(path: str) -> tuple[int, int]:
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: shard not found; run ingest again")
    for serialized in tf.data.TFRecordDataset(path).take(1):
        features = parse_record(serialized)
        return int(features[records.HEIGHT]), int(features[records.WIDTH])
    raise ValueError(f"{path}: shard has no records; run ingest again")


def dataset_shape(shard_paths: Sequence[str | Path]) -> tuple[int, int, int]:
    """(height, width, 3) of the images, from the first record of every shard."""
    paths = [str(path) for path in shard_paths]
    if not paths:
        raise ValueError("no shard files given: run ingest first, or check dataset.json lists shards")
    shapes = {path: _first_shape(path) for path in paths}
    first = paths[0]
    for path, shape in shapes.items():
        if shape != shapes[first]:
            raise ValueError(
                f"shards have different image sizes: {shapes[first][0]}x{shapes[first][1]} in {first} but "
                f"{shape[0]}x{shape[1]} in {path}; ingest all videos with the same size/downsample/crop_aspect"
            )
    return (*shapes[first], 3)


def image_dataset(
    shard_paths: Sequence[str | Path],
    batch_size: int,
    *,
    shuffle_buffer: int = 2048,
    seed: int | None = None,
    repeat: bool = True,
    drop_remainder: bool = True,
    split: Split = "all",
    holdout: Holdout = Holdout(),
    cache: bool = False,
) -> tf.data.Dataset:
    """Batches (B, H, W, 3) uint8 RGB; shuffle_buffer=0 keeps the shards' order. `cache` keeps the
    decoded frames of the first epoch in memory for the next ones (`cache_bytes` of them).

    With a seed the order is reproducible; without one, parallel stages may reorder
    elements for speed. A split that leaves no frame gives an empty dataset, even repeated.
    """
    height, width, channels = dataset_shape(shard_paths)
    paths = [str(path) for path in shard_paths]
    deterministic = seed is not None or shuffle_buffer == 0

    def decode(serialized: tf.Tensor) -> tf.Tensor:
        encoded = tf.io.parse_single_example(serialized, _IMAGE_ONLY)[records.IMAGE]
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        # ensure_shape also fails loudly on a record of another size deeper in a shard.
        return tf.ensure_shape(image, (height, width, channels))

    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_buffer > 0:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(paths), _MAX_OPEN_SHARDS),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if holdout.excluded:  # frames that repeat another video's: in no split
        dataset = dataset.filter(_not_excluded(holdout))
    if split != "all":
        keep_held_out = split == "holdout"
        dataset = dataset.filter(lambda serialized: held_out(serialized, holdout) == keep_held_out)
    if cache:
        dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic).cache()
    if shuffle_buffer > 0:
        # Streaming, shuffle the encoded bytes, a few times smaller than decoded frames.
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if not cache:
        dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def cache_bytes(frames: int, image_shape: Sequence[int]) -> int:
    """Memory the decoded frames of `frames` take in the cache (the shuffle buffer and batches
    share or copy only a few thousand of them)."""
    return frames * int(np.prod(image_shape))


def memory_bytes() -> int:
    """This machine's memory, or the container's limit when lower (cgroup v2, then v1)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            total = min(total, int(Path(limit).read_text()))
        except (OSError, ValueError):  # absent, or "max": no limit
            pass
    return total


def holdout_images(shard_paths: Sequence[str | Path], holdout: Holdout, limit: int) -> np.ndarray:
    """Up to `limit` held-out frames (N, H, W, 3) float32 in [-1, 1], the same ones every call."""
    dataset = image_dataset(
        shard_paths, limit, shuffle_buffer=0, repeat=False, drop_remainder=False, split="holdout", holdout=holdout
    )
    for images in dataset.take(1):
        return images.numpy().astype(np.float32) / 127.5 - 1.0
    return np.zeros((0, *dataset_shape(shard_paths)), np.float32)
