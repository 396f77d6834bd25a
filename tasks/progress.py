"""Per-video progress of ingest for a terminal: frames decoded of the expected count, time left.

`track` lists a video's readers (tasks.frames.FrameReader counts the frames it passes over)
while its shards are written; `states` reads every video in progress in this process. The
CLI draws them (cli/main.py) only when stdout is a terminal. Videos ingested in other
processes (Dask workers) are not seen here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tasks.frames import FrameReader


@dataclass(frozen=True)
class ProgressState:
    key: str
    decoded: int
    expected: int  # the container's frame count: an estimate for some formats
    elapsed_s: float

    @property
    def seconds_left(self) -> float | None:
        """At the rate so far; None before the first frame."""
        if self.decoded == 0:
            return None
        return max(self.expected - self.decoded, 0) * self.elapsed_s / self.decoded


class Tracker:
    def __init__(self, key: str, expected: int) -> None:
        self.key, self.expected, self.started = key, expected, time.monotonic()
        self.readers: list[FrameReader] = []

    def add(self, reader: FrameReader) -> FrameReader:
        self.readers.append(reader)
        return reader

    def state(self, now: float) -> ProgressState:
        decoded = sum(reader.decoded for reader in self.readers)
        return ProgressState(self.key, decoded, self.expected, now - self.started)


_active: dict[int, Tracker] = {}
_lock = threading.Lock()


@contextmanager
def track(key: str, expected: int) -> Iterator[Tracker]:
    """Make a video's progress visible to `states` while the block runs."""
    tracker = Tracker(key, expected)
    with _lock:
        _active[id(tracker)] = tracker
    try:
        yield tracker
    finally:
        with _lock:
            del _active[id(tracker)]


def states(min_seconds: float = 3.0) -> list[ProgressState]:
    """Videos in progress for at least `min_seconds` (a short one would only flicker), oldest first."""
    now = time.monotonic()
    with _lock:
        trackers = list(_active.values())
    return [tracker.state(now) for tracker in trackers if now - tracker.started >= min_seconds]
