"""dataset.json, the index training reads: a failed run never takes a video out of it, and one
content is listed once whatever names it was given under."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flows.ingest import IngestFailed, ingest
from gan.index import load_index
from synthwave.errors import UserError
from synthwave.settings import FrameSettings, IngestSettings
from tests.reliability.helpers import assert_dataset_sound, gradient, make_video


def settings(data_dir: Path) -> IngestSettings:
    return IngestSettings(data_dir=data_dir, frames=FrameSettings(every=1), shard_mb=0.05, workers=2)


def test_a_failed_ingest_keeps_the_videos_dataset_json_listed(prefect_server, tmp_path):
    data = tmp_path / "data"
    good = make_video(tmp_path / "good.avi", [gradient(48, 64, i) for i in range(5)])
    ingest([str(good)], settings(data))
    before = json.loads((data / "dataset.json").read_text())

    with pytest.raises(IngestFailed, match="missing.mp4"):
        ingest([str(tmp_path / "missing.mp4")], settings(data))

    after = assert_dataset_sound(data)
    assert after["videos"] == before["videos"] and after["frames"] == 5
    assert [failed["source"] for failed in after["failed"]] == [str(tmp_path / "missing.mp4")]
    assert load_index(data).frames == 5  # training still finds its frames


def test_a_later_ingest_adds_to_the_index(prefect_server, tmp_path):
    data = tmp_path / "data"
    first = make_video(tmp_path / "first.avi", [gradient(48, 64, i) for i in range(5)])
    second = make_video(tmp_path / "second.avi", [gradient(48, 64, 50 + i) for i in range(3)])
    ingest([str(first)], settings(data))
    ingest([str(second)], settings(data))
    assert [video["frames"] for video in assert_dataset_sound(data)["videos"]] == [5, 3]


def test_the_same_content_under_many_names_is_listed_once_and_each_failure_names_its_source(
    prefect_server, tmp_path
):
    data = tmp_path / "data"
    video = make_video(tmp_path / "c00.avi", [gradient(48, 64, i) for i in range(4)])
    copies = [str(shutil.copy(video, tmp_path / f"c{n:02d}.avi")) for n in range(1, 6)]
    noise = np.random.default_rng(1).bytes(50_000)  # not a video, under two names
    (tmp_path / "sound.mp4").write_bytes(noise)
    (tmp_path / "sound.wav").write_bytes(noise)

    with pytest.raises(IngestFailed) as caught:
        ingest([str(video), *copies, str(tmp_path / "sound.mp4"), str(tmp_path / "sound.wav")], settings(data))

    dataset = assert_dataset_sound(data)
    assert (len(dataset["videos"]), dataset["frames"]) == (1, 4)
    errors = {Path(failed["source"]).name: failed["error"] for failed in dataset["failed"]}
    assert set(errors) == {"sound.mp4", "sound.wav"}
    assert "sound.mp4" in errors["sound.mp4"] and "sound.wav" not in errors["sound.mp4"]
    assert errors["sound.wav"] == f"same content as {tmp_path / 'sound.mp4'}, which failed"
    assert "2 of 8 sources failed" in str(caught.value)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 3 MB tmpfs; skipped where this process may not mount one (not root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_cached_ingest_is_one_line_and_keeps_the_index(prefect_server, small_disk, tmp_path):
    data = small_disk / "data"
    video = make_video(tmp_path / "clip.avi", [gradient(48, 64, i) for i in range(5)])
    ingest([str(video)], settings(data))
    before = (data / "dataset.json").read_text()
    (small_disk / "filler").write_bytes(b"\0" * shutil.disk_usage(small_disk).free)

    with pytest.raises(IngestFailed) as caught:
        ingest([str(video)], settings(data))

    assert "No space left on device" in str(caught.value) and "free space" in str(caught.value)
    assert (data / "dataset.json").read_text() == before


def test_a_read_only_data_dir_is_one_line(prefect_server, small_disk, tmp_path):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    video = make_video(tmp_path / "clip.avi", [gradient(48, 64, i) for i in range(5)])
    with pytest.raises(UserError, match=r"^cannot write to data dir .*: give a writable --data-dir$"):
        ingest([str(video)], settings(small_disk))
