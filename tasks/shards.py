"""One video -> TFRecord shards + manifest.json, all or nothing.

Decoding stays on the calling thread (one streaming pass, see tasks/frames.py); PNG/JPEG
encoding runs on a thread pool (OpenCV and ISA-L release the GIL). A bounded number of
frames is in flight, so memory stays flat whatever the video's length. Everything is
built in a temp directory beside `out_dir` and renamed into place once complete.

A long video is decoded as segments, one thread each (tasks.frames.plan_segments): the
first writes its records to the shards as it goes, each later one to a temp file of its
own, appended in order once the segments before it are done. The shards are byte for
byte those of one pass, curated alike (tasks/curate.py: blank frames and near-duplicates are
dropped before encoding, and counted in the manifest). If a segment did not start on its planned frame (a container
whose timestamps make OpenCV's seek inexact), the video is read again in one pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from synthwave import records
from synthwave.atomic import sweep_temp_dirs, temp_dir, write_json
from synthwave.digest import file_sha256
from synthwave.settings import FrameSettings
from tasks.curate import KEEP, REPLACE, Curator, Fingerprint
from tasks.frames import Frame, FrameReader, Segment, VideoInfo, output_size, plan_segments, probe
from tasks.png import encode_png
from tasks.progress import Tracker, track

MANIFEST = "manifest.json"
CURATION_COUNTS = ("sampled", "dropped_duplicate", "dropped_blank")  # in a manifest beside "frames" (kept)
VERSION = 1
_MB = 1_000_000
_MAX_IN_FLIGHT = 64  # frames decoded but not yet written
_IN_FLIGHT_BYTES = 32 * _MB  # ... and their pixels at most (64 frames of 180x320 are 11 MB)
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ShardInfo:
    file: str  # name inside the manifest's directory
    records: int
    bytes: int
    sha256: str


def _encode(image: np.ndarray, settings: FrameSettings) -> bytes:
    if settings.image_format == "png":
        return encode_png(image)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} frame as JPEG")
    return buffer.tobytes()


def _cpus() -> int:
    """CPUs this process may run on (a container's limit, not the host's count)."""
    return len(os.sched_getaffinity(0))


def _record(frame: Frame, video_key: str, settings: FrameSettings) -> bytes:
    """One frame's serialised tf.train.Example; built on the pool, off the decoding thread."""
    height, width = frame.image.shape[:2]
    return records.encode_example(
        {
            records.IMAGE: _encode(frame.image, settings),
            records.FORMAT: settings.image_format,
            records.HEIGHT: height,
            records.WIDTH: width,
            records.CHANNELS: 3,
            records.VIDEO_KEY: video_key,
            records.FRAME_INDEX: frame.index,
            records.TIMESTAMP_S: float(frame.timestamp_s),
        }
    )


def _encoded(
    frames: Iterator[Frame], video_key: str, settings: FrameSettings, pool: ThreadPoolExecutor
) -> Iterator[tuple[Frame, bytes]]:
    """(frame, its record) in source order, encoded on `pool` with a bounded backlog.

    A deep backlog lets the encoders ride out stalls of the decoding thread (docs/sizing.md);
    its bytes are capped, so memory stays flat for large frames too.
    """
    pending: deque[tuple[Frame, Future[bytes]]] = deque()
    try:
        for frame in frames:
            pending.append((frame, pool.submit(_record, frame, video_key, settings)))
            if len(pending) > max(2 * _cpus(), min(_MAX_IN_FLIGHT, _IN_FLIGHT_BYTES // frame.image.nbytes)):
                head, future = pending.popleft()
                yield head, future.result()
        while pending:
            head, future = pending.popleft()
            yield head, future.result()
    finally:
        for _, future in pending:
            future.cancel()


class _HashingFile:
    """A binary file that hashes what is written to it, so shards are never read back."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.file = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.bytes = self.records = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.file.write(data)

    def close(self) -> ShardInfo:
        self.file.flush()
        os.fsync(self.file.fileno())  # the directory rename must not outrun the data
        self.file.close()
        return ShardInfo(self.name, self.records, self.bytes, self.sha256.hexdigest())


class _ShardWriter:
    """Appends records to `<key>-NNNNN.tfrecord`; a shard is closed once it reaches the limit.

    The last record written is held back until the next one (or `close`): curation may still
    `replace` it with a brighter frame of the same image (the end of a fade-in)."""

    def __init__(self, directory: Path, video_key: str, limit_bytes: int) -> None:
        self.directory, self.video_key, self.limit = directory, video_key, limit_bytes
        self.shards: list[ShardInfo] = []
        self.current: _HashingFile | None = None
        self.held: tuple[bytes, int] | None = None  # (record, frame index)
        self.first_index: int | None = None  # of the frames written
        self.last_index: int | None = None

    def write(self, example: bytes, frame_index: int) -> None:
        if self.held is not None:
            self._append(*self.held)
        self.held = example, frame_index

    def replace(self, example: bytes, frame_index: int) -> None:
        """The record held back gives way to this one."""
        self.held = example, frame_index

    def _append(self, example: bytes, frame_index: int) -> None:
        self.first_index = frame_index if self.first_index is None else self.first_index
        self.last_index = frame_index
        if self.current is None:
            self.current = _HashingFile(self.directory / f"{self.video_key}-{len(self.shards):05d}.tfrecord")
        records.write_record(self.current, example)
        self.current.records += 1
        if self.current.bytes >= self.limit:
            self._end_shard()

    def _end_shard(self) -> None:
        if self.current is not None:
            self.shards.append(self.current.close())
            self.current = None

    def close(self) -> None:
        if self.held is not None:
            self._append(*self.held)
            self.held = None
        self._end_shard()

    def abort(self) -> None:
        """Close without syncing: the temp directory is about to be removed."""
        self.held = None
        if self.current is not None:
            self.current.file.close()
            self.current = None

    def discard(self) -> None:
        """Remove everything written, to start again."""
        self.abort()
        for path in self.directory.glob(f"{self.video_key}-*.tfrecord"):
            path.unlink()
        self.shards, self.first_index, self.last_index = [], None, None


class _Spill:
    """A later segment's records, in order, in a temp file until the segments before it are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "wb")
        self.records: list[tuple[int, int]] = []  # (frame index, record bytes)

    def write(self, example: bytes, frame_index: int) -> None:
        self.file.write(example)
        self.records.append((frame_index, len(example)))

    def replay(self, writer: _ShardWriter, curator: Curator, hashes: dict[int, Fingerprint]) -> None:
        """Append the records to `writer` as `curator` decides, in frame order (`hashes`: by frame index)."""
        self.file.close()
        with open(self.path, "rb") as handle:
            for frame_index, size in self.records:
                record = handle.read(size)
                decision = KEEP if frame_index not in hashes else curator.admit(hashes[frame_index], frame_index)
                if decision == KEEP:
                    writer.write(record, frame_index)
                elif decision == REPLACE:
                    writer.replace(record, frame_index)

    def remove(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def write_video_shards(
    video_path: Path,
    video_key: str,
    settings: FrameSettings,
    shard_mb: float,
    out_dir: Path,
    source: str = "",
) -> dict:
    """Write one video's kept frames as shards of about `shard_mb` MB plus manifest.json.

    `out_dir` is replaced as a whole on success and left untouched on any error; a video
    without a kept frame is a VideoReadError (from tasks.frames). Returns the manifest.
    """
    if not _KEY.fullmatch(video_key):
        raise ValueError(f"video_key {video_key!r} must be letters, digits, '.', '_' or '-' (it names files)")
    video_path, out_dir = Path(video_path), Path(out_dir)
    info = probe(video_path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp_dirs(out_dir)
    tmp = temp_dir(out_dir)
    try:
        manifest = _write(video_path, video_key, settings, shard_mb, tmp, source, info)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write(
    video_path: Path, video_key: str, settings: FrameSettings, shard_mb: float, tmp: Path, source: str, info: VideoInfo
) -> dict:
    height, width = output_size(info.height, info.width, settings)
    writer = _ShardWriter(tmp, video_key, max(1, int(shard_mb * _MB)))
    cpus = _cpus()
    segments = plan_segments(info, settings, cpus)
    curator = Curator(settings)
    try:
        with ThreadPoolExecutor(cpus, thread_name_prefix="encode") as pool, track(video_key, info.frames) as tracker:
            args = (video_path, video_key, settings, segments, writer, pool, curator, tracker)
            if len(segments) > 1 and not _write_segments(*args):
                writer.discard()
                segments, curator = [Segment()], Curator(settings)
                tracker.readers.clear()
            if len(segments) == 1:
                with tracker.add(FrameReader(video_path, settings)) as reader:
                    for frame, record in _encoded(curator.filter(reader), video_key, settings, pool):
                        (writer.replace if curator.replaces(frame.index) else writer.write)(record, frame.index)
        curator.check(video_path)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    manifest = {
        "version": VERSION,
        "video_key": video_key,
        "source": source,
        "settings": settings.model_dump(mode="json"),
        "frames": sum(shard.records for shard in writer.shards),
        **{key: curator.counts()[key] for key in CURATION_COUNTS},
        "height": height,
        "width": width,
        "channels": 3,
        "format": settings.image_format,
        "first_frame_index": writer.first_index,
        "last_frame_index": writer.last_index,
        "fps": info.fps,
        "shards": [asdict(shard) for shard in writer.shards],
        # With dedupe: each kept frame's fingerprint, so ingest can find frames another video repeats.
        "hashes": curator.manifest_hashes(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(tmp / MANIFEST, manifest)  # last: a directory with a manifest is complete
    return manifest


def _write_segments(
    video_path: Path, video_key: str, settings: FrameSettings, segments: list[Segment],
    writer: _ShardWriter, pool: ThreadPoolExecutor, curator: Curator, tracker: Tracker,
) -> bool:  # fmt: skip
    """Decode `segments` concurrently, one single-threaded capture each, into `writer` in frame
    order, curated as one pass would; False (with records written) if a segment did not start
    where the previous stopped."""
    stop = threading.Event()  # set on the first error: the other segments end early
    pending: list[dict[int, Fingerprint]] = [{} for _ in segments[1:]]  # what a later segment leaves to the join

    def drain(reader: FrameReader, sink: _ShardWriter | _Spill, hashes: dict[int, Fingerprint] | None = None) -> None:
        try:
            frames = curator.filter(reader) if hashes is None else curator.prefilter(reader, hashes)
            for frame, record in _encoded(frames, video_key, settings, pool):
                if stop.is_set():
                    return
                if hashes is None and curator.replaces(frame.index):  # the first segment, curated as it comes
                    writer.replace(record, frame.index)
                else:
                    sink.write(record, frame.index)
        except BaseException:
            stop.set()
            raise

    threads = max(1, _cpus() // len(segments))
    readers: list[FrameReader] = []
    spills: list[_Spill] = []
    try:
        for segment in segments:
            readers.append(tracker.add(FrameReader(video_path, settings, segment, threads)))
        spills = [_Spill(writer.directory / f".segment-{n}.records") for n in range(1, len(segments))]
        with ThreadPoolExecutor(len(spills), thread_name_prefix="segment") as decoders:
            later = [
                decoders.submit(drain, reader, spill, hashes)
                for reader, spill, hashes in zip(readers[1:], spills, pending, strict=True)
            ]
            try:
                drain(readers[0], writer)
            finally:
                errors = [future.exception() for future in later]
        if stop.is_set():
            raise next(error for error in errors if error is not None)
        if not all(after.continues(before) for before, after in zip(readers, readers[1:])):
            return False
        for spill, hashes in zip(spills, pending, strict=True):
            spill.replay(writer, curator, hashes)
        return True
    finally:
        for reader in readers:
            reader.capture.release()
        for spill in spills:
            spill.remove()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`; an old `out_dir` is moved aside first and restored on failure."""
    _fsync_dir(tmp)
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{secrets.token_hex(4)}"
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        if old is not None:
            os.rename(old, out_dir)
        raise
    _fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_manifest(path: Path) -> dict:
    """Read a manifest.json written by write_video_shards; ValueError if it is another version."""
    path = Path(path)
    with open(path) as handle:
        manifest = json.load(handle)
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
        raise ValueError(f"{path}: not a version-{VERSION} shard manifest; ingest the video again")
    return manifest


def verify_manifest(manifest_path: Path) -> bool:
    """True if the manifest loads and every shard exists with its recorded size and sha256."""
    manifest_path = Path(manifest_path)
    try:
        shards = load_manifest(manifest_path)["shards"]
        return bool(shards) and all(shard_ok(manifest_path.parent, shard) for shard in shards)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def shard_ok(directory: Path, shard: dict) -> bool:
    """True if the manifest entry `shard` is in `directory` with its recorded size and sha256."""
    path = directory / shard["file"]
    return path.is_file() and path.stat().st_size == shard["bytes"] and file_sha256(path) == shard["sha256"]
