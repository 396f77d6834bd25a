"""Ingest on the thread pool against ingest on a local Dask cluster of worker processes.

    python -m benchmarks.scale [--copies 8] [--workers 2] [--every 240] [--format png]

Ingests `copies` copies of each sample video (shared/videos): each copy has a few bytes
appended, which OpenCV ignores, so it is a distinct file key and nothing is served from
the cache; every run writes to a fresh data folder. All runs go through the ingest flow
against one temporary Prefect server, started (and warmed up) before the clock. Dask runs
twice: on a temporary cluster (`task_runner: dask`, its start and stop on the clock) and on
a running one (`dask_address`, started and warmed up before the clock: the steady state).
Ratios are threads / Dask wall time (above 1: Dask is faster). The machine may be shared:
the load average is printed with each run; the frame counts must match between runs.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if "PREFECT_HOME" not in os.environ:  # before Prefect is imported: a private home, removed at exit
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="synthwave-bench-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)

from flows.ingest import ingest  # noqa: E402
from synthwave.settings import FrameSettings, IngestSettings  # noqa: E402

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"
NAMES = ("bottle-detection.mp4", "milk.mkv", "book.mkv")


def make_copies(folder: Path, copies: int, names: tuple[str, ...] = NAMES) -> tuple[list[str], int]:
    """`copies` distinct files per sample video; returns them and their total source frames."""
    import cv2

    folder.mkdir(exist_ok=True)
    sources, frames = [], 0
    for name in names:
        capture = cv2.VideoCapture(str(VIDEOS / name))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for i in range(copies):
            copy = folder / f"{i}-{name}"
            shutil.copy(VIDEOS / name, copy)
            with open(copy, "ab") as handle:
                handle.write(f"\0synthwave copy {i}\n".encode())  # a new content hash: a new key
            sources.append(str(copy))
            frames += count
    return sources, frames


def timed(sources: list[str], settings: IngestSettings) -> tuple[float, dict]:
    start = time.perf_counter()
    ingest(sources, settings)
    wall = time.perf_counter() - start
    return wall, json.loads((settings.data_dir / "dataset.json").read_text())


@contextmanager
def running_cluster(workers: int, work: Path, frames: FrameSettings) -> Iterator[str]:
    """A local cluster, warmed up (imports, Prefect client) by one video per worker; its address."""
    import distributed

    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        warm, _ = make_copies(work / "warm-dask", workers, names=("milk.mkv",))
        ingest(warm, IngestSettings(data_dir=work / "warm-dask", frames=frames, task_runner="dask",
                                    dask_address=cluster.scheduler_address))
        yield cluster.scheduler_address


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of each sample video (default: 8)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default: 2)")
    parser.add_argument("--every", type=int, default=240, help="keep every Nth frame (default: 240)")
    parser.add_argument("--format", choices=("png", "jpeg"), default="png", help="image format (default: png)")
    args = parser.parse_args()
    if not (VIDEOS / NAMES[0]).is_file():
        raise SystemExit(f"error: sample videos not found in {VIDEOS}: clone shared/ beside the repo")

    work = Path(tempfile.mkdtemp(prefix="synthwave-scale-"))
    try:
        sources, source_frames = make_copies(work, args.copies)
        frames = FrameSettings(every=args.every, image_format=args.format)  # the default size: 180x320
        ingest([str(VIDEOS / "milk.mkv")], IngestSettings(data_dir=work / "warm-up", frames=frames))
        print(f"{len(sources)} videos, {source_frames} source frames, every={args.every}, {args.format}, "
              f"{os.cpu_count()} CPUs, {load()}")
        results: dict[str, tuple[float, int]] = {}

        def measure(label: str, settings: IngestSettings) -> None:
            wall, dataset = timed(sources, settings)
            shard_bytes = sum(path.stat().st_size for path in (settings.data_dir / "shards").rglob("*.tfrecord"))
            results[label] = (wall, dataset["frames"])
            print(f"{label:<24} {wall:7.1f} s  {source_frames / wall:6.0f} source frames/s  {dataset['frames']} "
                  f"frames kept, {shard_bytes / dataset['frames']:,.0f} shard bytes/frame  {load()}")

        measure("threads (4)", IngestSettings(data_dir=work / "threads", frames=frames))
        dask = {"frames": frames, "task_runner": "dask"}
        new = IngestSettings(data_dir=work / "new", workers=args.workers, **dask)
        measure(f"dask, new cluster ({args.workers})", new)
        with running_cluster(args.workers, work, frames) as address:
            running = IngestSettings(data_dir=work / "running", dask_address=address, **dask)
            measure(f"dask, running ({args.workers})", running)
        if len({frames for _, frames in results.values()}) != 1:
            raise SystemExit(f"error: the runs kept different numbers of frames: {results}")
        thread_wall = results["threads (4)"][0]
        for label, (wall, _) in list(results.items())[1:]:
            print(f"threads / {label}: {thread_wall / wall:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # Dask's worker processes import this module again
    main()
