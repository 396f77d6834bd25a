"""Per-video ingest progress: the counts it reports, and that it shows only on a terminal."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np

from cli.main import ingest_progress
from synthwave.settings import FrameSettings
from tasks import progress
from tasks.frames import FrameReader


def make_video(path: Path, count: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    y, x = np.mgrid[0:48, 0:64]
    for i in range(count):
        writer.write(np.dstack([(x + i) % 256, y, np.full_like(x, i)]).astype(np.uint8))
    writer.release()
    return path


def test_the_state_counts_frames_decoded_of_the_expected_and_ends_with_the_video(tmp_path):
    video = make_video(tmp_path / "v.avi", 100)
    with progress.track("v", 100) as tracker, tracker.add(FrameReader(video, FrameSettings(every=10))) as reader:
        frames = iter(reader)
        assert [next(frames).index, next(frames).index] == [0, 10]
        [state] = progress.states(min_seconds=0)
        assert (state.key, state.decoded, state.expected) == ("v", 11, 100)  # frames 0..10 passed over
        assert state.seconds_left == state.elapsed_s * 89 / 11
        assert progress.states(min_seconds=3600) == []  # a short video is not shown
        assert len(list(frames)) == 8
        assert progress.states(min_seconds=0)[0].decoded == 100
    assert progress.states(min_seconds=0) == []


def test_bars_show_on_a_terminal_only(tmp_path):
    video = make_video(tmp_path / "v.avi", 100)
    plain = io.StringIO()
    master, slave = os.openpty()
    with open(slave, "w") as terminal:
        for stream in (plain, terminal):
            with ingest_progress(stream, min_seconds=0, every_s=0.01), progress.track("clip", 100) as tracker:
                with tracker.add(FrameReader(video, FrameSettings(every=10))) as reader:
                    frames = iter(reader)
                    next(frames), next(frames)
                    time.sleep(0.3)  # several refreshes
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", os.read(master, 65536).decode(errors="replace"))  # no colours
    os.close(master)
    assert plain.getvalue() == ""
    assert "clip" in shown and "11/100 frames, 0:0" in shown  # seconds left
