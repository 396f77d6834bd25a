"""Sharding: rollover, names, manifest, checksums, and all-or-nothing replacement."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from synthwave import records
from synthwave.settings import FrameSettings
from tasks import shards
from tasks.frames import FrameReader, Segment, VideoInfo, VideoReadError, iter_frames, plan_segments
from tasks.shards import load_manifest, verify_manifest, write_video_shards

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
# Raw sampling: milk.mkv is one image to curation (tests/test_curate.py covers curation).
RAW = {"dedupe": False, "drop_blank": False}
EVERY_FRAME = FrameSettings(every=1, **RAW)


def clip(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"sample clip {path} is absent (see shared/videos/README.md)")
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def leftovers(parent: Path) -> list[str]:
    return [path.name for path in parent.iterdir() if path.name.startswith(".")]


def test_shards_roll_over_with_deterministic_names_and_a_true_manifest(tmp_path):
    video = clip("milk.mkv")
    manifest = write_video_shards(video, "milk", EVERY_FRAME, 0.3, tmp_path / "a", source="file://milk.mkv")
    assert manifest == load_manifest(tmp_path / "a" / "manifest.json")
    names = [shard["file"] for shard in manifest["shards"]]
    assert len(names) >= 3
    assert names == [f"milk-{i:05d}.tfrecord" for i in range(len(names))]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted([*names, "manifest.json"])
    assert all(shard["bytes"] >= 300_000 for shard in manifest["shards"][:-1])  # full before the next
    assert manifest["frames"] == sum(shard["records"] for shard in manifest["shards"]) == 51
    expected = {
        "version": 1,
        "video_key": "milk",
        "source": "file://milk.mkv",
        "settings": EVERY_FRAME.model_dump(mode="json"),
        "height": 180,  # the default size: its 16:9 middle, resized
        "width": 320,
        "channels": 3,
        "format": "png",
        "first_frame_index": 0,
        "last_frame_index": 50,
        "fps": 30.0,
    }
    assert {key: manifest[key] for key in expected} == expected
    assert manifest["created"].startswith("20")
    for shard in manifest["shards"]:
        data = (tmp_path / "a" / shard["file"]).read_bytes()
        assert len(data) == shard["bytes"]
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
    # Same input and settings, same bytes: shard names and contents are deterministic.
    again = write_video_shards(video, "milk", EVERY_FRAME, 0.3, tmp_path / "b")
    assert [s["sha256"] for s in again["shards"]] == [s["sha256"] for s in manifest["shards"]]


def test_records_hold_every_kept_frame_in_order(tmp_path):
    video = clip("milk.mkv")
    settings = FrameSettings(every=7, downsample=4, **RAW)
    manifest = write_video_shards(video, "milk", settings, 0.05, tmp_path / "out")
    examples = []
    for shard in manifest["shards"]:
        with open(tmp_path / "out" / shard["file"], "rb") as handle:
            found = records.read_records(handle)
        assert len(found) == shard["records"]
        examples += [tf.train.Example.FromString(data).features.feature for data in found]
    frames = list(iter_frames(video, settings))
    assert [e[records.FRAME_INDEX].int64_list.value[0] for e in examples] == [f.index for f in frames]
    for example, frame in zip(examples, frames, strict=True):
        assert example[records.VIDEO_KEY].bytes_list.value == [b"milk"]
        assert example[records.FORMAT].bytes_list.value == [b"png"]
        assert example[records.HEIGHT].int64_list.value == [120]
        assert example[records.WIDTH].int64_list.value == [160]
        assert example[records.CHANNELS].int64_list.value == [3]
        assert example[records.TIMESTAMP_S].float_list.value[0] == pytest.approx(frame.timestamp_s)
        encoded = np.frombuffer(example[records.IMAGE].bytes_list.value[0], np.uint8)
        np.testing.assert_array_equal(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED), frame.image)


def test_verify_manifest_detects_missing_and_corrupted_shards(tmp_path):
    manifest = write_video_shards(clip("milk.mkv"), "milk", EVERY_FRAME, 0.3, tmp_path / "out")
    path = tmp_path / "out" / "manifest.json"
    assert verify_manifest(path)
    first = tmp_path / "out" / manifest["shards"][0]["file"]
    original = first.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01  # same size, one bit changed
    first.write_bytes(bytes(flipped))
    assert not verify_manifest(path)
    first.write_bytes(original)
    assert verify_manifest(path)
    (tmp_path / "out" / manifest["shards"][-1]["file"]).unlink()
    assert not verify_manifest(path)
    assert not verify_manifest(tmp_path / "nowhere" / "manifest.json")
    path.write_text(json.dumps({"version": 2, "shards": []}))
    assert not verify_manifest(path)
    with pytest.raises(ValueError, match="version-1"):
        load_manifest(path)


def test_failure_midway_leaves_the_old_output_and_no_temp_dir(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_video_shards(clip("milk.mkv"), "milk", FrameSettings(every=10, **RAW), 0.3, out)
    before = snapshot(out)
    calls = 0
    real_write = records.write_record

    def failing_write(handle, example):
        nonlocal calls
        calls += 1
        if calls == 20:
            raise OSError("disk full")
        return real_write(handle, example)

    monkeypatch.setattr(shards.records, "write_record", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_video_shards(clip("milk.mkv"), "milk", EVERY_FRAME, 0.3, out)
    assert calls == 20
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []


def test_success_replaces_the_old_output_whole(tmp_path):
    out = tmp_path / "shards" / "milk"  # parents are created
    write_video_shards(clip("milk.mkv"), "milk", EVERY_FRAME, 0.3, out)
    jpeg = FrameSettings(every=25, image_format="jpeg", **RAW)
    manifest = write_video_shards(clip("milk.mkv"), "milk", jpeg, 0.3, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "milk-00000.tfrecord"]
    assert (manifest["frames"], manifest["format"], manifest["last_frame_index"]) == (3, "jpeg", 50)
    assert verify_manifest(out / "manifest.json")
    assert leftovers(out.parent) == []


def test_no_kept_frame_is_an_error_not_an_empty_dataset(tmp_path):
    with pytest.raises(VideoReadError, match="milk.mkv"):
        write_video_shards(clip("milk.mkv"), "milk", FrameSettings(start_s=60), 1, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="video_key"):
        write_video_shards(clip("milk.mkv"), "../milk", EVERY_FRAME, 1, tmp_path / "out")


def without_time(manifest: dict) -> dict:
    return {key: value for key, value in manifest.items() if key != "created"}


def shard_bytes(directory: Path) -> dict[str, bytes]:
    """Every file but the manifest (whose "created" differs), by name."""
    return {name: data for name, data in snapshot(directory).items() if name != "manifest.json"}


def one_pass(video: Path, settings: FrameSettings, out: Path, monkeypatch) -> dict:
    with monkeypatch.context() as patch:
        patch.setattr(shards, "plan_segments", lambda info, settings, cpus: [Segment()])
        return write_video_shards(video, "bottle", settings, 1.0, out)


@pytest.mark.parametrize("cpus", [2, 3])
def test_segments_write_the_shards_of_one_pass_byte_for_byte(tmp_path, monkeypatch, cpus):
    video, settings = clip("bottle-detection.mp4"), FrameSettings(every=7, **RAW)  # 1189 frames: 2 segments
    expected = one_pass(video, settings, tmp_path / "one", monkeypatch)
    monkeypatch.setattr(shards, "_cpus", lambda: cpus)
    planned = []

    def plan(*args):
        planned.append(plan_segments(*args))
        return planned[-1]

    monkeypatch.setattr(shards, "plan_segments", plan)
    manifest = write_video_shards(video, "bottle", settings, 1.0, tmp_path / "segments")
    assert [segment.start for segment in planned[0]] == [0, 594]
    assert len(manifest["shards"]) >= 3  # 1 MB shards: one spans the boundary between the segments
    assert without_time(manifest) == without_time(expected)
    assert shard_bytes(tmp_path / "segments") == shard_bytes(tmp_path / "one")
    assert leftovers(tmp_path) == []


def test_a_segment_that_lands_on_another_frame_is_caught_and_the_video_read_in_one_pass(tmp_path, monkeypatch):
    """As on a container whose timestamps make OpenCV's seek by frame number inexact."""
    video, settings = clip("bottle-detection.mp4"), FrameSettings(every=5)
    expected = one_pass(video, settings, tmp_path / "one", monkeypatch)

    class LandsLate(FrameReader):
        def __iter__(self):
            if self.segment.start:  # the seek overshoots by 3 frames and counts them as the planned ones
                self.segment = Segment(self.segment.start + 3, self.segment.stop)
            return super().__iter__()

    monkeypatch.setattr(shards, "_cpus", lambda: 2)
    monkeypatch.setattr(shards, "FrameReader", LandsLate)
    checks = []
    def continues(self, before):
        checks.append(FrameReader.continues(self, before))
        return checks[-1]

    monkeypatch.setattr(LandsLate, "continues", continues)
    manifest = write_video_shards(video, "bottle", settings, 1.0, tmp_path / "late")
    assert checks == [False]
    assert without_time(manifest) == without_time(expected)
    assert shard_bytes(tmp_path / "late") == shard_bytes(tmp_path / "one")
    assert leftovers(tmp_path) == []


def test_segments_are_planned_only_for_long_videos_read_by_a_frame_stride():
    info = VideoInfo(frames=1189, fps=30.0, height=360, width=640)
    assert plan_segments(info, FrameSettings(every=10), 2) == [Segment(0, 594), Segment(594, None)]
    assert [s.start for s in plan_segments(VideoInfo(4000, 30.0, 360, 640), FrameSettings(), 16)] == list(range(0, 4000, 400))
    for settings in (
        FrameSettings(every_seconds=2), FrameSettings(start_s=1), FrameSettings(end_s=30), FrameSettings(max_frames=9)
    ):
        assert plan_segments(info, settings, 2) == [Segment()]
    assert plan_segments(info, FrameSettings(), 1) == [Segment()]
    assert plan_segments(VideoInfo(799, 30.0, 360, 640), FrameSettings(), 8) == [Segment()]
