"""Training input from a bucket: shards staged to local disk vs streamed from S3.

    python -m benchmarks.storage                          # bottle-detection.mp4, 3 epochs
    python -m benchmarks.storage --epochs 1 --rounds 5

An S3 server (moto, in its own process on 127.0.0.1) holds the shards of one ingested
video. Both ways read every frame `--epochs` times through the same parse -> decode ->
shuffle -> batch steps:
  staged    tasks.storage.stage_dataset (parallel GETs, sha256 checked) into an empty
            folder, then TFRecordDataset over the local files: what `train` does;
  streamed  tf.data from a Python generator per shard reading s3fs files (TF 2.21 has no
            s3:// file system of its own).
Both then run gan.data.image_dataset's steps (interleave, shuffle, decode, batch; seeded,
so deterministic, as in training).
Rounds alternate (staged, streamed, staged, ...) on this shared machine and the median
round is reported, in frames per second of the whole run (staging included) and as a
ratio to staged. The server is on loopback, so requests cost no network latency; a real
bucket adds tens of milliseconds per request and bandwidth limits, paid once when staged
and every epoch when streamed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from synthwave import records  # noqa: E402
from gan.index import load_index  # noqa: E402
from synthwave.settings import FrameSettings, StorageSettings  # noqa: E402
from tasks.storage import DATASET, open_bucket, publish_file, publish_shards, stage_dataset  # noqa: E402
from tasks.shards import write_video_shards  # noqa: E402

VIDEO = Path(__file__).resolve().parents[2] / "shared" / "videos" / "bottle-detection.mp4"
BATCH, SHUFFLE = 64, 2048
ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip


def start_server() -> tuple[subprocess.Popen, str]:
    """moto's server in its own process (its request handling does not share our GIL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)


def publish(video: Path, store: StorageSettings, work: Path, every: int, downsample: float, shard_mb: float) -> int:
    """Ingest one video's frames into shards and publish them as ingest does; returns frames."""
    data = work / "published"
    folder = data / "shards" / "bench" / "x"
    manifest = write_video_shards(video, "bench", FrameSettings(every=every, downsample=downsample), shard_mb, folder)
    index = {"frames": manifest["frames"], "videos": [{
        "key": "bench", "shape": [manifest["height"], manifest["width"], 3], "manifest": "shards/bench/x/manifest.json",
        "shards": [f"shards/bench/x/{shard['file']}" for shard in manifest["shards"]],
    }]}  # fmt: skip
    (data / DATASET).write_text(json.dumps(index))
    publish_shards(store, data, folder)
    publish_file(store, data, data / DATASET)
    print(f"published {manifest['frames']} frames of {manifest['height']}x{manifest['width']} in "
          f"{len(manifest['shards'])} shards, {sum(s['bytes'] for s in manifest['shards']) / 1e6:.1f} MB")  # fmt: skip
    return manifest["frames"]


def decode(serialized: tf.Tensor) -> tf.Tensor:
    encoded = tf.io.parse_single_example(serialized, {records.IMAGE: tf.io.FixedLenFeature([], tf.string)})
    image = tf.io.decode_image(encoded[records.IMAGE], channels=3, expand_animations=False)
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def s3_records(store: StorageSettings, path: str) -> Iterator[bytes]:
    """The records of one TFRecord file in the bucket, read as a stream (CRCs not checked)."""
    bucket = open_bucket(store)
    with bucket.fs.open(bucket.path(path), "rb", block_size=8 << 20) as handle:
        while header := handle.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            yield handle.read(length)
            handle.read(4)


def batches(files: list[str], read: Callable[[tf.Tensor], tf.data.Dataset]) -> tf.data.Dataset:
    """gan.data.image_dataset's steps with a seed (as training runs them), records from `read`."""
    dataset = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=0)
    dataset = dataset.interleave(read, cycle_length=min(len(files), 16), num_parallel_calls=tf.data.AUTOTUNE,
                                 deterministic=True)  # fmt: skip
    dataset = dataset.shuffle(SHUFFLE, seed=0).map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(BATCH).prefetch(tf.data.AUTOTUNE)


def streamed(store: StorageSettings, shards: list[str]) -> tf.data.Dataset:
    def read(path: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_generator(
            lambda p: s3_records(store, p.decode()), args=(path,), output_signature=tf.TensorSpec([], tf.string)
        )

    return batches(shards, read)


def count(dataset: tf.data.Dataset) -> int:
    return sum(int(batch.shape[0]) for batch in dataset)


def run_staged(store: StorageSettings, work: Path, epochs: int) -> tuple[int, float, float]:
    """(frames read, seconds in all, seconds of staging) into a fresh folder."""
    start = time.perf_counter()
    folder = Path(tempfile.mkdtemp(dir=work, prefix="staged-"))
    stage_dataset(store, folder)
    staged = time.perf_counter() - start
    shards = load_index(folder).shards
    frames = sum(count(batches(shards, tf.data.TFRecordDataset)) for _ in range(epochs))
    return frames, time.perf_counter() - start, staged


def run_streamed(store: StorageSettings, epochs: int) -> tuple[int, float, float]:
    start = time.perf_counter()
    index = json.loads(open_bucket(store).read(DATASET))
    shards = [shard for video in index["videos"] for shard in video["shards"]]
    frames = sum(count(streamed(store, shards)) for _ in range(epochs))
    return frames, time.perf_counter() - start, 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--every", type=int, default=1, help="keep every Nth frame")
    parser.add_argument("--downsample", type=float, default=2.0, help="as ingest's --downsample (2: 180x320)")
    parser.add_argument("--shard-mb", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.update(ENV)
    server, endpoint = start_server()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
            import boto3

            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            store = StorageSettings(url="s3://bench/data", endpoint_url=endpoint)
            frames = publish(args.video, store, Path(tmp), args.every, args.downsample, args.shard_mb)
            timings: dict[str, list[tuple[int, float, float]]] = {"staged": [], "streamed": []}
            for _ in range(args.rounds):
                timings["staged"].append(run_staged(store, Path(tmp), args.epochs))
                timings["streamed"].append(run_streamed(store, args.epochs))
    finally:
        server.terminate()
        server.wait()
    for name, rounds in timings.items():
        assert all(read == frames * args.epochs for read, _, _ in rounds), (name, rounds)
    base = statistics.median(seconds for _, seconds, _ in timings["staged"])
    print(f"{frames} frames x {args.epochs} epoch(s), median of {args.rounds} rounds (batch {BATCH}):")
    for name, rounds in timings.items():
        seconds = statistics.median(s for _, s, _ in rounds)
        staging = statistics.median(s for _, _, s in rounds)
        note = f" (staging {staging:.2f} s of it)" if staging else ""
        print(f"  {name:9s} {seconds:7.2f} s{note}  {frames * args.epochs / seconds:8.0f} frames/s  "
              f"x{base / seconds:.2f} of staged")  # fmt: skip


if __name__ == "__main__":
    main()
