"""Curation at ingest: blank frames and near-duplicates dropped, counted, and refused when nothing is left.

The videos are made here from frames of the shared sample clips: a slideshow with hard cuts,
a black intro and outro and a fade to black; a clip looped; a still; an all-black video.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from synthwave.settings import FrameSettings
from tasks import shards
from tasks.curate import (
    CurationError,
    Curator,
    HashIndex,
    colour_distance,
    dct_hash,
    distance,
    fingerprint,
    repeats,
    thumbnail,
)
from tasks.demo import render_frame
from tasks.frames import Frame
from tasks.shards import write_video_shards

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"
FPS = 10
SIZE = (180, 320)  # (height, width) of the videos made here: the default frame size, kept as is
CURATED = FrameSettings(every=1)
RAW = FrameSettings(every=1, dedupe=False, drop_blank=False)


def still(name: str, index: int) -> np.ndarray:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"sample clip {path} is absent (see shared/videos/README.md)")
    capture = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, image = capture.read()
        assert ok, f"{path} has no frame {index}"
    capture.release()
    return cv2.resize(image, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA)


def stills() -> list[np.ndarray]:
    """Four different images: the bottle scene, the signer, and each of them upside down."""
    bottle, signer = still("bottle-detection.mp4", 0), still("milk.mkv", 0)
    return [bottle, signer, cv2.flip(bottle, 0), cv2.flip(signer, 0)]


def make_video(path: Path, frames: list[np.ndarray]) -> Path:
    """MJPG: each frame is coded alone, so a repeated frame decodes to the same pixels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (SIZE[1], SIZE[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def black(seconds: float) -> list[np.ndarray]:
    return [np.zeros((*SIZE, 3), np.uint8)] * round(seconds * FPS)


def counts(manifest: dict) -> tuple[int, int, int, int]:
    return manifest["sampled"], manifest["frames"], manifest["dropped_duplicate"], manifest["dropped_blank"]


def test_the_stills_are_far_apart_and_a_fade_hashes_like_its_frame():
    """What the other tests rely on, by the numbers (dedupe_distance 10)."""
    hashes = [dct_hash(thumbnail(image)) for image in stills()]
    apart = [distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(apart) > 2 * CURATED.dedupe_distance
    image = stills()[0]
    for level in (0.7, 0.4, 0.2):
        faded = (image * level).round().astype(np.uint8)
        assert distance(dct_hash(thumbnail(faded)), hashes[0]) <= CURATED.dedupe_distance


def complementary(image: np.ndarray) -> np.ndarray:
    """The same luma, every chroma negated (red for cyan, magenta for green): one structure, other colours."""
    ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb).astype(np.int16)
    ycrcb[..., 1:] = 256 - ycrcb[..., 1:]
    return cv2.cvtColor(np.clip(ycrcb, 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2BGR)


def test_one_structure_in_other_colours_is_kept_twice_and_its_fade_still_falls_onto_it(tmp_path):
    image = render_frame(*SIZE, 0.0, 0)  # a demo scene: saturated sky, sun and grid
    other = complementary(image)
    (value, colour), (other_value, other_colour) = fingerprint(thumbnail(image)), fingerprint(thumbnail(other))
    assert distance(value, other_value) <= 2  # to the grey hash, one image
    assert colour_distance(colour, other_colour) > 2 * CURATED.colour_distance
    for level in (0.7, 0.4, 0.2):
        faded_value, faded_colour = fingerprint(thumbnail((other * level).round().astype(np.uint8)))
        assert distance(faded_value, other_value) <= CURATED.dedupe_distance
        assert colour_distance(faded_colour, other_colour) <= CURATED.colour_distance
    fade = [(other * (1 - step / 10)).round().astype(np.uint8) for step in range(1, 10)]
    video = make_video(tmp_path / "colours.avi", [image] * FPS + [other] * FPS + fade)
    manifest = write_video_shards(video, "colours", CURATED, 1.0, tmp_path / "out")
    assert counts(manifest) == (3 * FPS - 1, 2, 3 * FPS - 3, 0)
    assert (manifest["first_frame_index"], manifest["last_frame_index"]) == (0, FPS)


def test_slideshow_keeps_each_still_once_without_the_black_and_the_fade(tmp_path):
    images = stills()
    fade = [(images[-1] * (1 - step / 10)).round().astype(np.uint8) for step in range(1, 11)]
    frames = black(1) + [image for image in images for _ in range(3 * FPS)] + fade + black(1)
    video = make_video(tmp_path / "slideshow.avi", frames)
    manifest = write_video_shards(video, "slides", CURATED, 1.0, tmp_path / "curated")
    # Blank: the intro, the outro and the fade's last frame; the rest of the fade hashes as its still.
    assert counts(manifest) == (len(frames), len(images), len(frames) - len(images) - 2 * FPS - 1, 2 * FPS + 1)
    # The kept frames are the first of each still: every cut is seen.
    assert manifest["first_frame_index"] == FPS
    raw = write_video_shards(video, "slides", RAW, 1.0, tmp_path / "raw")
    assert counts(raw) == (len(frames), len(frames), 0, 0)


def _written(manifest: dict) -> list[tuple[int, float]]:
    """(frame index, mean luma) of each frame written, from the manifest's fingerprints."""
    return [(index, int(colour[-2:], 16)) for index, _, colour in manifest["hashes"]]


def _luma(image: np.ndarray) -> float:
    return float(fingerprint(thumbnail(image))[1][-1].real)


def test_a_scene_faded_in_from_black_is_kept_as_it_looks_not_as_the_fades_first_frame(tmp_path):
    a, b = stills()[:2]
    fade_in = [(a * (step / 10)).round().astype(np.uint8) for step in range(1, 11)]  # x0.1 .. x1.0
    frames = black(1) + fade_in + [a] * (2 * FPS) + [b] * (2 * FPS)
    manifest = write_video_shards(make_video(tmp_path / "fade-in.avi", frames), "in", CURATED, 1.0, tmp_path / "out")
    blank = FPS + 1  # the black and the fade's x0.1 frame
    assert counts(manifest) == (len(frames), 2, len(frames) - 2 - blank, blank)
    (first, first_luma), (second, _) = _written(manifest)
    # Kept when the fade's first frame not blank (x0.2) appears, replaced by each frame a tenth
    # brighter than it: what is written is the end of the fade, not a fifth of the scene's light.
    assert first >= 2 * FPS - 2 and first_luma >= 0.85 * _luma(a)
    assert second == 4 * FPS and manifest["first_frame_index"] == first
    assert write_video_shards(tmp_path / "fade-in.avi", "in", CURATED.model_copy(update={"dedupe": False}), 1.0,
                              tmp_path / "raw")["frames"] == len(frames) - blank  # fmt: skip


def test_a_looped_clip_keeps_about_one_loop(tmp_path):
    capture = cv2.VideoCapture(str(VIDEOS / "bottle-detection.mp4"))
    clip = []
    for index in range(480):
        ok, image = capture.read()
        assert ok
        if index % 8 == 0:  # 60 frames: 6 s at 10 fps, the scene moving
            clip.append(cv2.resize(image, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA))
    once = write_video_shards(make_video(tmp_path / "once.avi", clip), "once", CURATED, 1.0, tmp_path / "once")
    looped = write_video_shards(make_video(tmp_path / "loop.avi", clip * 4), "loop", CURATED, 1.0, tmp_path / "loop")
    assert 1 < once["frames"] < len(clip)
    assert counts(looped) == (4 * len(clip), once["frames"], 4 * len(clip) - once["frames"], 0)
    assert looped["last_frame_index"] < len(clip)  # nothing kept after the first loop


def test_a_still_keeps_one_frame_and_is_refused_unless_dedupe_is_off(tmp_path):
    video = make_video(tmp_path / "still.avi", [stills()[0]] * 30)
    curator = Curator(CURATED)
    kept = list(curator.filter(Frame(i, i / FPS, image) for i, image in enumerate([stills()[0]] * 30)))
    assert [frame.index for frame in kept] == [0]
    refused = r"still\.avi: its 30 sampled frames are one repeated image; pass --no-dedupe"
    with pytest.raises(CurationError, match=refused):
        write_video_shards(video, "still", CURATED, 1.0, tmp_path / "out")
    assert list(tmp_path.glob("out*")) == list(tmp_path.glob(".out*")) == []  # nothing left behind
    manifest = write_video_shards(video, "still", FrameSettings(every=1, dedupe=False), 1.0, tmp_path / "out")
    assert counts(manifest) == (30, 30, 0, 0)


def test_an_all_black_video_is_refused_unless_blank_frames_are_kept(tmp_path):
    video = make_video(tmp_path / "black.avi", black(3))
    with pytest.raises(CurationError, match=r"black\.avi: all 30 sampled frames are blank .*; pass --keep-blank"):
        write_video_shards(video, "black", CURATED, 1.0, tmp_path / "out")
    with pytest.raises(CurationError, match="one repeated image"):  # kept, but one black image 30 times
        write_video_shards(video, "black", FrameSettings(every=1, drop_blank=False), 1.0, tmp_path / "out")
    assert counts(write_video_shards(video, "black", RAW, 1.0, tmp_path / "out")) == (30, 30, 0, 0)


def test_a_mirrored_still_is_not_taken_for_its_original(tmp_path):
    image = stills()[1]
    video = make_video(tmp_path / "mirror.avi", [image] * FPS + [cv2.flip(image, 1)] * FPS)
    manifest = write_video_shards(video, "mirror", CURATED, 1.0, tmp_path / "out")
    assert counts(manifest) == (2 * FPS, 2, 2 * FPS - 2, 0)
    assert (manifest["first_frame_index"], manifest["last_frame_index"]) == (0, FPS)


def one_pass_and_segments(video: Path, tmp_path: Path, monkeypatch) -> tuple[dict, dict]:
    """The manifests of `video` read in one pass, then as two concurrent segments."""
    with monkeypatch.context() as patch:
        patch.setattr(shards, "plan_segments", lambda info, settings, cpus: [shards.Segment()])
        one = write_video_shards(video, "video", CURATED, 1.0, tmp_path / "one")
    monkeypatch.setattr(shards, "_cpus", lambda: 2)
    return one, write_video_shards(video, "video", CURATED, 1.0, tmp_path / "two")


def test_segments_curate_as_one_pass(tmp_path, monkeypatch):
    """Decoded as two concurrent segments, a looped video's shards are still those of one pass."""
    looped = make_video(tmp_path / "loop.avi", [image for image in stills() for _ in range(50)] * 5)  # 1000 frames
    one, two = one_pass_and_segments(looped, tmp_path, monkeypatch)
    assert counts(one) == counts(two) == (1000, 4, 996, 0)
    assert [shard["sha256"] for shard in one["shards"]] == [shard["sha256"] for shard in two["shards"]]


def test_segments_curate_a_real_video_as_one_pass(tmp_path, monkeypatch):
    one, two = one_pass_and_segments(VIDEOS / "bottle-detection.mp4", tmp_path, monkeypatch)  # 1189 frames
    assert counts(one) == counts(two) and one["sampled"] == 1189 and 1 < one["frames"] < 100
    assert [shard["sha256"] for shard in one["shards"]] == [shard["sha256"] for shard in two["shards"]]


def test_segments_curate_a_fade_in_across_their_boundary_as_one_pass(tmp_path, monkeypatch):
    """A scene fading in across the two segments' boundary (frame 500): the frame written for it
    is the one one pass writes, the fade's end, replacing a frame of the first segment."""
    a, b = stills()[:2]
    fade_in = [(b * (step / 20)).round().astype(np.uint8) for step in range(1, 21)]  # frames 490-509
    video = make_video(tmp_path / "fade.avi", [a] * 490 + fade_in + [b] * 490)
    one, two = one_pass_and_segments(video, tmp_path, monkeypatch)
    assert counts(one) == counts(two) and one["frames"] == 2
    assert [shard["sha256"] for shard in one["shards"]] == [shard["sha256"] for shard in two["shards"]]
    assert _written(one) == _written(two)
    (_, _), (index, luma) = _written(two)
    assert index >= 505 and luma >= 0.85 * _luma(b)


def test_the_index_finds_a_near_hash_among_many():
    index, rng = HashIndex(), np.random.default_rng(0)
    values = [int(value) for value in rng.integers(0, 2**63, 1000, dtype=np.int64)]
    colours = rng.uniform(-20, 20, (1000, 34)).astype(np.float32).view(np.complex64)  # 16 cells, then the luma
    colours[:, -1] = 64  # chroma in units of 1/64 of the luma: a unit is a level
    for value, colour in zip(values, colours, strict=True):
        index.add(value, colour)
    assert index.count == 1000
    assert index.near(values[700] ^ 0b1111111111, colours[700], 10, 4.0)  # 10 bits off
    assert not index.near(values[700] ^ 0b11111111111, colours[700], 10, 4.0)  # 11 bits off; random ones are ~32
    shifted = colours[700] + np.complex64(3 + 3j)  # every cell's chroma 3 * sqrt(2) = 4.2 off
    assert not index.near(values[700], shifted, 10, 4.0)
    assert index.near(values[700], shifted, 10, 4.3)


def test_repeats_compares_each_video_with_those_before_it_never_with_itself():
    grey, red = "00" * 32 + "40", "40" * 32 + "40"  # signatures: no chroma; every cell's R-Y and B-Y 64; luma 64
    a = [[0, "00000000000000ff", grey], [5, "ffffffff00000000", grey]]
    b = [[0, "00000000000001ff", grey], [9, "0f0f0f0f0f0f0f0f", grey]]  # frame 0: 1 bit from a's frame 0
    assert repeats([("a", a), ("b", b), ("a", a)], CURATED) == {"b": [0]}
    assert repeats([("a", a), ("b", b)], CURATED.model_copy(update={"dedupe_distance": 0})) == {}
    c = [[0, "00000000000000ff", red]]  # a's frame 0 in other colours
    assert repeats([("a", a), ("c", c)], CURATED) == {}


def test_a_video_repeating_another_of_the_dataset_adds_only_its_new_frames(prefect_server, tmp_path):
    """The slideshow, and a re-encode of it (mp4v, another codec) with one still of its own at
    the end: the second contributes only that still; the reader skips the rest of its frames."""
    from flows.ingest import ingest
    from gan.data import image_dataset
    from gan.index import load_index
    from synthwave.settings import IngestSettings

    images = stills()
    first = make_video(tmp_path / "first.avi", [image for image in images[:3] for _ in range(FPS)])
    writer = cv2.VideoWriter(str(tmp_path / "again.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (SIZE[1], SIZE[0]))
    for image in images:
        for _ in range(FPS):
            writer.write(image)
    writer.release()
    data = tmp_path / "data"
    halved = FrameSettings(every=1, downsample=2)  # each still's own size halved: compared below with [::2, ::2]
    ingest([str(first), str(tmp_path / "again.mp4")], IngestSettings(data_dir=data, frames=halved))
    dataset = json.loads((data / "dataset.json").read_text())
    first_key, again_key = (video["key"] for video in dataset["videos"])
    assert [(v["frames"], v["repeated"]) for v in dataset["videos"]] == [(3, 0), (1, 3)]
    assert dataset["excluded"] == {again_key: [0, FPS, 2 * FPS]} and dataset["frames"] == 4
    assert [row["repeated"] for row in _table(str(first))] == [0, 3]  # the run's table artifact says it too
    index = load_index(data)
    assert index.frames == 4 and index.holdout.excluded == {f"{again_key}/{i}" for i in (0, FPS, 2 * FPS)}
    batches = image_dataset(
        index.shards, 8, shuffle_buffer=0, repeat=False, drop_remainder=False, holdout=index.holdout
    )
    read = np.concatenate([batch.numpy() for batch in batches]).astype(np.float32)  # uint8 RGB
    assert len(read) == 4
    last = cv2.cvtColor(images[3], cv2.COLOR_BGR2RGB)[::2, ::2].astype(np.float32)
    assert np.abs(read[-1] - last).mean() < 0.05 * 255  # the re-encode's own still, not a repeat


def _table(source: str) -> list[dict]:
    """The rows of the ingest-sources table artifact of the run that ingested `source`."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter

    with get_client(sync_client=True) as client:
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key={"any_": ["ingest-sources"]}))
    for table in tables:
        rows = json.loads(table.data) if isinstance(table.data, str) else table.data
        if any(row["source"] == source for row in rows):
            return rows
    raise AssertionError(f"no ingest-sources table lists {source}")
