"""Ingest throughput against the decode limit, curation's share of it, and peak memory on a long video.

    python -m benchmarks.ingest

Throughput is in source frames per second (frames of the video passed over, kept or
not) on shared/videos/bottle-detection.mp4. The machine is shared, so each ingest run is
bracketed by decode runs and the best of N ratios is reported (the median too). Peak RSS
is measured in a fresh subprocess ingesting a 10-minute 360p video made here.

Curation's share (tasks/curate.py): the CPU time its checks take over the frames ingest
samples, as ingest meets them (between two decodes, less the measuring loop's own; best of
N), against the CPU time of that ingest with curation on, all its threads (best of N); CPU
time, as ingest keeps every core busy at every=1 and the machine may be shared. Shown beside
it: curation's time against ingest's wall time, as if it all sat on one thread's critical
path, and its cost a frame on frames decoded beforehand (out of cache). The other runs are
of raw sampling.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synthwave.settings import FrameSettings
from tasks.curate import Curator
from tasks.frames import Frame, iter_frames
from tasks.shards import write_video_shards

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "videos" / "bottle-detection.mp4"
REPEATS = 5
# (every, image format, minimum ratio to the decode limit or None); JPEG shows the codec's share.
RUNS = [(1, "png", 0.5), (10, "png", 1.5), (240, "png", None), (1, "jpeg", None)]
RAW = {"dedupe": False, "drop_blank": False}
CURATION_RUNS = [(1, 5.0), (240, None)]  # (every, most % of ingest time or None)
RSS_LIMIT_MB = 600
LONG_SECONDS, LONG_FPS, LONG_SIZE = 600, 30, (360, 640)


def decode_fps(video: Path) -> tuple[float, int]:
    """Plain VideoCapture.read() over the whole file: the limit to compare to."""
    capture = cv2.VideoCapture(str(video))
    frames, start = 0, time.perf_counter()
    while capture.read()[0]:
        frames += 1
    return frames / (time.perf_counter() - start), frames


def ingest_fps(video: Path, frames: int, settings: FrameSettings, work: Path) -> float:
    out = work / "out"
    start = time.perf_counter()
    write_video_shards(video, "bench", settings, 100, out)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return frames / elapsed


@dataclass(frozen=True)
class Row:
    label: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None  # None: no target
    digits: int = 0


def throughput(work: Path) -> list[Row]:
    """Each ingest run is bracketed by decode runs; the best of the per-run ratios counts."""
    rows = []
    for every, image_format, target in RUNS:
        settings = FrameSettings(every=every, image_format=image_format, **RAW)
        runs = []  # (ratio, ingest fps, decode fps)
        decode, frames = decode_fps(VIDEO)
        for _ in range(REPEATS):
            ingest = ingest_fps(VIDEO, frames, settings, work)
            after, _ = decode_fps(VIDEO)
            baseline = (decode + after) / 2  # the load seen just before and just after
            runs.append((ingest / baseline, ingest, baseline))
            decode = after
        ratio, ingest, baseline = max(runs)
        median = sorted(run[0] for run in runs)[len(runs) // 2]
        label = f"every={every:<3} {image_format:<4}"
        rows.append(Row(f"{label} decode limit: read(), around the best run", baseline, "fps"))
        unit = f"fps {ratio:.2f}x (median {median:.2f}x)"
        passed = None if target is None else ratio >= target
        rows.append(Row(f"{label} write_video_shards", ingest, unit, "" if target is None else f">= {target}x", passed))
    return rows


def _best_seconds(run, clock=time.perf_counter, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return min(times)


def curation_seconds(settings: FrameSettings) -> float:
    """Thread CPU seconds curation takes over the frames ingest samples, as ingest meets them on
    its decoding thread (just decoded and resized, between two decodes): the loop's time less
    the time spent getting the frames, less the same loop's own time without curation (the
    clock reads that separate the two; best of N each)."""
    raw = settings.model_copy(update=RAW)

    def best_loop(curate: bool) -> float:
        best = float("inf")
        for _ in range(REPEATS):
            reading = 0.0

            def frames() -> Iterator[Frame]:
                nonlocal reading
                source = iter_frames(VIDEO, raw)
                while True:
                    start = time.thread_time()
                    frame = next(source, None)
                    reading += time.thread_time() - start
                    if frame is None:
                        return
                    yield frame

            start = time.thread_time()
            for _ in Curator(settings).filter(frames()) if curate else frames():
                pass
            best = min(best, time.thread_time() - start - reading)
        return best

    return best_loop(curate=True) - best_loop(curate=False)


def curation_share(work: Path) -> list[Row]:
    """CPU seconds of curation as a share of the CPU seconds of ingest with curation on."""
    rows = []
    for every, target in CURATION_RUNS:
        settings, raw = FrameSettings(every=every), FrameSettings(every=every, **RAW)
        curate = curation_seconds(settings)
        frames = list(iter_frames(VIDEO, raw))  # decoded beforehand: out of cache when curated
        beforehand = _best_seconds(lambda: list(Curator(settings).filter(frames)), time.thread_time)
        out = work / "curated"
        ingest_cpu = _best_seconds(lambda: write_video_shards(VIDEO, "bench", settings, 100, out), time.process_time)
        curated = _best_seconds(lambda: write_video_shards(VIDEO, "bench", settings, 100, out))
        manifest = write_video_shards(VIDEO, "bench", settings, 100, out)
        plain = _best_seconds(lambda: write_video_shards(VIDEO, "bench", raw, 100, out), time.process_time)
        shutil.rmtree(out)
        share = 100 * curate / ingest_cpu
        kept = f"{manifest['frames']} of {manifest['sampled']} kept"
        unit = (
            f"% of CPU ({100 * curate / curated:.1f}% of wall); {1e6 * curate / len(frames):.0f} us/frame "
            f"({1e6 * beforehand / len(frames):.0f} on frames decoded beforehand); {kept}; "
            f"raw ingest {plain / ingest_cpu:.2f}x the CPU"
        )
        target_text = "" if target is None else f"<= {target:g}%"
        passed = None if target is None else share <= target
        rows.append(Row(f"every={every:<3} png  curation's share", share, unit, target_text, passed, digits=1))
    return rows


def make_long_video(path: Path) -> None:
    """Procedural 360p clip: a drifting noise texture, so frames neither repeat nor compress to nothing."""
    height, width = LONG_SIZE
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height + 256, width + 256, 3), np.uint8), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), LONG_FPS, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v here")
    for i in range(LONG_SECONDS * LONG_FPS):
        dy, dx = (i // 3) % 256, i % 256
        writer.write(np.ascontiguousarray(texture[dy : dy + height, dx : dx + width]))
    writer.release()


_CHILD = """
import json, sys, time
from pathlib import Path
from synthwave.settings import FrameSettings
from tasks.shards import write_video_shards
start = time.perf_counter()
manifest = write_video_shards(Path(sys.argv[1]), "long", FrameSettings(every=1, dedupe=False, drop_blank=False), 100,
                              Path(sys.argv[2]))
print(json.dumps({"frames": manifest["frames"], "shards": len(manifest["shards"]),
                  "seconds": time.perf_counter() - start, "tensorflow": "tensorflow" in sys.modules}))
"""


def peak_rss(work: Path) -> tuple[float, dict]:
    """Peak RSS (MB) of a fresh process ingesting the long video at every=1."""
    video = work / "long.mp4"
    make_long_video(video)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(video), str(work / "long")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    # ru_maxrss is in KiB on Linux: the largest of the children waited for (only this one).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return peak_mb, json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if not VIDEO.is_file():
        sys.exit(f"{VIDEO} is missing: the benchmark needs the shared sample clips")
    print(f"ingest benchmark on {VIDEO.name}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print(f"best of {REPEATS} ingest runs, each against the decode runs around it; source frames per second\n")
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        work = Path(tmp)
        rows = throughput(work) + curation_share(work)
        peak_mb, child = peak_rss(work)
    label = f"peak RSS: {LONG_SECONDS // 60}-min {LONG_SIZE[0]}p mp4v, every=1 ({child['frames']} frames)"
    rows.append(Row(label, peak_mb, "MB", f"< {RSS_LIMIT_MB} MB", peak_mb < RSS_LIMIT_MB))
    width = max(len(row.label) for row in rows)
    unit_width = max(len(row.unit) for row in rows)
    print(f"{'measure':<{width}}  {'value':>6}  {'':<{unit_width}}  {'target':<9}  result")
    for row in rows:
        verdict = "" if row.passed is None else ("PASS" if row.passed else "MISS")
        print(f"{row.label:<{width}}  {row.value:>6.{row.digits}f}  {row.unit:<{unit_width}}  {row.target:<9}  {verdict}")
    print(
        f"\nlong video: {child['frames'] / child['seconds']:.0f} source fps, {child['shards']} shards; "
        f"tensorflow imported by ingest: {child['tensorflow']}; load average now {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
