"""Bad input: every case fails with a one-line error naming the input, and writes nothing.

What tests/test_sources.py, test_frames.py, test_download.py and test_cli.py already cover
is not repeated here (docs/guarantees.md maps the cases to their tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from gan.index import DatasetError, load_index
from gan.loop import ImageSizeError, check_image_size
from cli.main import _read_sources, build_parser, ingest_settings, main, train_settings
from synthwave.settings import DownloadSettings, FrameSettings, IngestSettings, TrainSettings
from tasks.frames import VideoReadError, probe
from tasks.shards import load_manifest, write_video_shards
from tasks.sources import InvalidSourceError, parse_source
from tests.loopback import SAMPLE_VIDEOS
from tests.reliability.helpers import everything, gradient, make_video

# -- videos --------------------------------------------------------------------------------


def _unreadable(tmp: Path) -> dict[str, Path]:
    videos = {}
    videos["zero-bytes"] = tmp / "zero.mp4"
    videos["zero-bytes"].touch()
    videos["zero-frames"] = make_video(tmp / "zero-frames.avi", [])  # a header, no frame
    videos["not-a-video"] = tmp / "noise.mkv"
    videos["not-a-video"].write_bytes(np.random.default_rng(1).bytes(50_000))
    videos["html"] = tmp / "page.mp4"
    videos["html"].write_text("<!doctype html><title>Sign in</title>" * 100)
    whole = make_video(tmp / "whole.avi", [gradient(48, 64, i) for i in range(60)])
    videos["truncated"] = tmp / "truncated.avi"
    videos["truncated"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    if (SAMPLE_VIDEOS / "bottle-detection.mp4").is_file():
        videos["truncated-mp4"] = tmp / "truncated.mp4"  # its index (moov) is at the end: gone
        videos["truncated-mp4"].write_bytes((SAMPLE_VIDEOS / "bottle-detection.mp4").read_bytes()[:200_000])
    return videos


def test_unreadable_videos_fail_naming_the_file_and_write_nothing(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "data" / "shards"
    for case, video in _unreadable(inputs).items():
        with pytest.raises(VideoReadError) as caught:
            write_video_shards(video, "k", FrameSettings(every=1), 1.0, out / case)
        message = str(caught.value)
        assert video.name in message and "\n" not in message, (case, message)
        # At most the (empty) parent folder: no output folder, no temp folder, no shard.
        assert set(everything(tmp_path / "data")) <= {"shards"}, (case, everything(tmp_path / "data"))


@pytest.mark.parametrize(
    ("case", "frames", "every", "kept", "shape"),
    [
        ("single-frame", [gradient(48, 64, 9)], 240, 1, (24, 32)),
        ("fewer-frames-than-every", [gradient(48, 64, i) for i in range(5)], 240, 1, (24, 32)),
        ("odd-size", [gradient(97, 131, i) for i in range(4)], 1, 4, (48, 66)),  # round(97/2), round(131/2)
        ("portrait", [gradient(131, 97, i) for i in range(4)], 2, 2, (66, 48)),
        # Structured, not flat: OpenCV 5.0's MJPEG writer asserts on an all-black grey frame.
        ("grayscale", [gradient(50, 70, 30 * i)[..., 0].copy() for i in range(4)], 1, 4, (25, 35)),
    ],
)
def test_awkward_but_valid_videos_ingest(tmp_path, case, frames, every, kept, shape):
    video = make_video(tmp_path / f"{case}.avi", frames)
    assert probe(video).height == frames[0].shape[0] and probe(video).width == frames[0].shape[1]
    # Each video's own size halved (size none), then the default size: one crop and resize for all.
    own = FrameSettings(every=every, downsample=2, drop_blank=False)
    halved = write_video_shards(video, "k", own, 1.0, tmp_path / "out")
    assert halved["frames"] == kept
    assert (halved["height"], halved["width"], halved["channels"]) == (*shape, 3)
    sized = write_video_shards(video, "k", FrameSettings(every=every, drop_blank=False), 1.0, tmp_path / "sized")
    assert (sized["height"], sized["width"], sized["channels"]) == (180, 320, 3)


def test_a_16_bit_grayscale_video_ingests_as_8_bit_colour(tmp_path):
    """Deep colour (here 16-bit FFV1, what OpenCV can write; 10-bit is read the same way)."""
    path = tmp_path / "deep.mkv"
    params = [cv2.VIDEOWRITER_PROP_DEPTH, cv2.CV_16U, cv2.VIDEOWRITER_PROP_IS_COLOR, 0]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"FFV1"), 25, (64, 48), params)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write 16-bit video")
    for i in range(4):
        writer.write(np.full((48, 64), 16000 * i, np.uint16))
    writer.release()
    raw = FrameSettings(every=1, downsample=1, dedupe=False, drop_blank=False)  # flat grey frames: blank, one image
    manifest = write_video_shards(path, "deep", raw, 1.0, tmp_path / "out")
    assert (manifest["frames"], manifest["height"], manifest["width"], manifest["channels"]) == (4, 48, 64, 3)


def test_a_downsample_to_nothing_names_the_setting_and_writes_nothing(tmp_path):
    video = make_video(tmp_path / "tiny.avi", [gradient(8, 8, i) for i in range(3)])
    with pytest.raises(ValueError, match=r"downsample=20\.0") as caught:
        write_video_shards(video, "k", FrameSettings(downsample=20), 1.0, tmp_path / "data" / "out")
    assert "\n" not in str(caught.value)
    assert everything(tmp_path / "data") == []


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"frames": {"every": 0}}, "frames.every"),
        ({"frames": {"every_seconds": 0}}, "frames.every_seconds"),
        ({"frames": {"every_seconds": -1.5}}, "frames.every_seconds"),
        ({"frames": {"downsample": 0.5}}, "frames.downsample"),
        ({"frames": {"size": "7x320"}}, "frames.size"),
        ({"frames": {"evry": 3}}, "frames.evry"),  # unknown key, as a typo in prefect.yaml
        ({"download": {"max_hieght": 360}}, "download.max_hieght"),
        ({"download": {"allowed_hosts": 5}}, "download.allowed_hosts"),
        ({"download": {"max_duration_s": 0}}, "download.max_duration_s"),
        ({"shard_mb": "big"}, "shard_mb"),
        ({"shard_mb": "inf"}, "shard_mb"),
        ({"sources": ["x"]}, "sources"),  # a flow parameter in the settings block
    ],
)
def test_bad_settings_are_refused_naming_the_key(values, key):
    with pytest.raises(ValidationError) as caught:
        IngestSettings.model_validate(values)
    locations = {".".join(str(part) for part in error["loc"]) for error in caught.value.errors()}
    assert any(location == key or location.startswith(f"{key}.") for location in locations), locations


def test_download_limits_from_the_command_line():
    args = build_parser().parse_args(["ingest", "x.mp4", "--allowed-hosts", "Media.Example.org, 10.0.0.0/8"])
    assert ingest_settings(args).download.allowed_hosts == ("media.example.org", "10.0.0.0/8")
    assert DownloadSettings().allowed_hosts is None  # default: public hosts, private ones refused
    args = build_parser().parse_args(["ingest", "x.mp4", "--max-duration-s", "none"])
    assert ingest_settings(args).download.max_duration_s is None  # no limit, on purpose


@pytest.mark.parametrize("flag", ["--g-lr", "--d-lr", "--r1-gamma"])
def test_an_infinite_rate_is_refused_at_validation(flag):
    with pytest.raises(ValidationError) as caught:
        train_settings(build_parser().parse_args(["train", flag, "inf"]))
    assert [error["loc"] for error in caught.value.errors()] == [("optimisation", flag[2:].replace("-", "_"))]


def test_a_sources_file_that_is_not_utf8_is_one_line(tmp_path):
    sources = tmp_path / "sources.txt"
    sources.write_bytes("caf\xe9.mp4\n".encode("latin-1"))
    with pytest.raises(SystemExit) as caught:
        _read_sources(build_parser().parse_args(["ingest", "--sources-file", str(sources)]))
    assert str(caught.value).startswith(f"error: sources file {sources} is not UTF-8 text"), caught.value


@pytest.mark.parametrize("text", ["{", "[]", '{"videos": [{"shards": 5}]}'])
def test_a_malformed_dataset_json_is_one_line(tmp_path, text):
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(DatasetError, match=r"dataset.json is not a dataset index .*: rerun ingest$") as caught:
        load_index(tmp_path)
    assert "\n" not in str(caught.value)


def test_an_image_size_too_small_for_the_blocks_suggests_fewer_blocks():
    with pytest.raises(ImageSizeError) as caught:
        check_image_size(TrainSettings(eval_every=0), (8, 8, 3))
    assert "--max-blocks 2" in str(caught.value) and "--size 8x8" not in str(caught.value), caught.value


def test_allowed_hosts_none_means_any_public_host_as_its_help_says():
    args = build_parser().parse_args(["ingest", "x.mp4", "--allowed-hosts", "none"])
    assert ingest_settings(args).download.allowed_hosts is None
    assert DownloadSettings(allowed_hosts="").allowed_hosts == ()  # an empty list still allows no host
    assert DownloadSettings(allowed_hosts="none.example.org").allowed_hosts == ("none.example.org",)


def test_an_image_size_the_generator_cannot_make_fails_before_anything_is_built(prefect_server, tmp_path):
    """ingest --size 33x43 (odd sides) then train: refused at once, naming --size, no run dir."""
    from flows.train import train

    data = tmp_path / "data"
    (data / "shards").mkdir(parents=True)
    (data / "shards" / "a.tfrecord").write_bytes(b"")  # load_index wants the listed shards to exist
    video = {"key": "a", "frames": 10, "shape": [33, 43, 3], "shards": ["shards/a.tfrecord"], "manifest": "m"}
    (data / "dataset.json").write_text(json.dumps({"version": 1, "frames": 10, "videos": [video]}))
    run_dir = tmp_path / "run"

    state = train(TrainSettings(data_dir=data, run_dir=run_dir, steps=1), return_state=True)

    assert state.is_failed()
    assert "--size" in state.message and "33x43" in state.message and "\n" not in state.message, state.message
    assert not run_dir.exists()  # no lock, no config.json, no checkpoint


@pytest.mark.parametrize("dataset", ["missing", "odd-size"])
def test_the_cli_says_why_training_cannot_start_in_one_line(prefect_server, tmp_path, capsys, dataset):
    data = tmp_path / "data"
    if dataset == "odd-size":
        (data / "shards").mkdir(parents=True)
        (data / "shards" / "a.tfrecord").write_bytes(b"")
        video = {"key": "a", "frames": 10, "shape": [33, 43, 3], "shards": ["shards/a.tfrecord"], "manifest": "m"}
        (data / "dataset.json").write_text(json.dumps({"version": 1, "frames": 10, "videos": [video]}))

    code = main(["train", "--data-dir", str(data), "--run-dir", str(tmp_path / "run"), "--steps", "1"])

    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert ("ingest" in err) if dataset == "missing" else ("--size" in err), err


# -- sources: names never come from URL text ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "https://example.org/" + "a" * 100_000 + ".mp4",  # overlong
        "https://example.org/..%2f..%2f..%2fetc%2fpasswd",
        "https://example.org/%00/x.mp4",
        "http://example.org/C:\\Windows\\x.mp4",
    ],
)
def test_keys_are_short_and_safe_whatever_the_url(text, tmp_path):
    source = parse_source(text)
    assert len(source.key) == len("url-") + 16
    target = (tmp_path / "downloads" / f"{source.key}.mp4").resolve()
    assert target.parent == (tmp_path / "downloads").resolve()


def test_an_overlong_source_is_named_in_a_bounded_message():
    with pytest.raises(InvalidSourceError) as caught:
        parse_source("ftp://example.org/" + "a" * 100_000)
    assert len(str(caught.value)) < 400 and "ftp" in str(caught.value)


def test_a_manifest_from_the_network_is_not_trusted_blindly(tmp_path):
    """A manifest is JSON, checked by version; nothing under data_dir is unpickled by our code."""
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="version-1"):
        load_manifest(tmp_path / "manifest.json")
