"""Frame extraction on the real sample clips and on small videos made here."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from synthwave.settings import FrameSettings
from tasks.frames import VideoReadError, _shape, iter_frames, output_size, probe

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


def clip(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"sample clip {path} is absent (see shared/videos/README.md)")
    return path


def source_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    """Frames by index, read sequentially with plain read(): the reference."""
    capture, frames, index = cv2.VideoCapture(str(path)), {}, 0
    while len(frames) < len(indices):
        ok, image = capture.read()
        assert ok, f"{path} ended before frame {index}"
        if index in indices:
            frames[index] = image
        index += 1
    return frames


def make_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    height, width = frames[0].shape[:2]
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height), frames[0].ndim == 3)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def indices(path: Path, **settings) -> list[int]:
    return [frame.index for frame in iter_frames(path, FrameSettings(**settings))]


def test_every_240_keeps_every_240th_frame_at_half_size():
    frames = list(iter_frames(clip("bottle-detection.mp4"), FrameSettings(every=240)))
    assert [f.index for f in frames] == [0, 240, 480, 720, 960]
    assert all(f.image.shape == (180, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.timestamp_s for f in frames] == pytest.approx([i / 29.8333 for i in (0, 240, 480, 720, 960)], abs=1e-3)


def test_every_seconds_keeps_the_frame_nearest_each_multiple():
    frames = list(iter_frames(clip("bottle-detection.mp4"), FrameSettings(every_seconds=10)))
    assert [f.index for f in frames] == [0, 298, 597, 895]
    for k, frame in enumerate(frames):
        assert abs(frame.timestamp_s - 10 * k) <= 0.5 / 29.83


def test_start_end_and_max_frames():
    path = clip("bottle-detection.mp4")
    assert indices(path, every=30, start_s=10, end_s=13) == [298, 328, 358]  # 388 is at 13.0 s: excluded
    assert indices(path, every=1, max_frames=3) == [0, 1, 2]
    assert indices(path, every=5, start_s=20, max_frames=2) == [597, 602]


def test_pixels_equal_read_then_resize_including_after_a_seek():
    path = clip("bottle-detection.mp4")
    kept = list(iter_frames(path, FrameSettings(every=97, start_s=4)))
    assert kept[0].index == 119  # nearest to 4 s
    reference = source_frames(path, {f.index for f in kept})
    for frame in kept:
        expected = cv2.resize(reference[frame.index], (320, 180), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(frame.image, expected, err_msg=f"frame {frame.index}")


def test_size_and_centre_crop():
    path = clip("milk.mkv")  # 480x640
    frame = next(iter_frames(path, FrameSettings(every=1, size="64x48", crop_aspect="1:1")))
    square = source_frames(path, {0})[0][:, 80:560]
    np.testing.assert_array_equal(frame.image, cv2.resize(square, (48, 64), interpolation=cv2.INTER_AREA))
    frame = next(iter_frames(path, FrameSettings(every=1, crop_aspect="16:9", downsample=1)))
    np.testing.assert_array_equal(frame.image, source_frames(path, {0})[0][60:420])


def test_the_default_size_centre_crops_a_4_3_video_to_16_9_instead_of_stretching_it():
    path = clip("milk.mkv")  # 480x640
    frame = next(iter_frames(path, FrameSettings(every=1)))
    middle = source_frames(path, {0})[0][60:420]  # its 16:9 middle, 360x640
    np.testing.assert_array_equal(frame.image, cv2.resize(middle, (320, 180), interpolation=cv2.INTER_AREA))


def test_size_is_the_default_a_downsample_alone_or_size_none_keeps_each_videos_own_size():
    assert (FrameSettings().size, FrameSettings().aspect) == ((180, 320), 320 / 180)
    assert output_size(480, 640, FrameSettings(size="none")) == (240, 320)  # downsample 2
    assert output_size(480, 640, FrameSettings(downsample=4)) == (120, 160)
    assert output_size(480, 640, FrameSettings(downsample=4, size="90x160")) == (90, 160)
    # A dumped default (both keys present) reads back as the default: size wins.
    assert FrameSettings.model_validate(FrameSettings().model_dump(mode="json")) == FrameSettings()


def test_the_digest_changes_with_the_crop_a_size_implies():
    """The key names what the frames look like: an explicit 16:9 crop is the default's, a
    size with another aspect or none at all is not."""
    default = FrameSettings().digest()
    assert FrameSettings(crop_aspect="16:9").digest() == default
    assert FrameSettings(crop_aspect="4:3").digest() != default
    assert FrameSettings(size=None).digest() != default
    assert FrameSettings(size="180x240").digest() != default


def test_output_size():
    assert output_size(360, 640, FrameSettings()) == (180, 320)
    assert output_size(480, 640, FrameSettings(crop_aspect="16:9")) == (180, 320)
    assert output_size(480, 640, FrameSettings(crop_aspect=0.5, downsample=4)) == (120, 60)
    assert output_size(98, 130, FrameSettings(downsample=3)) == (33, 43)
    assert output_size(360, 640, FrameSettings(size=(64, 96), crop_aspect=1)) == (64, 96)
    with pytest.raises(ValueError, match="downsample"):
        output_size(1, 1, FrameSettings(downsample=3))
    with pytest.raises(ValueError, match="crop_aspect"):
        output_size(10, 10, FrameSettings(crop_aspect=100))


def test_tiny_video_refuses_a_downsample_to_nothing(tmp_path):
    path = make_video(tmp_path / "tiny.avi", [np.zeros((8, 8, 3), np.uint8)] * 3)
    with pytest.raises(ValueError, match="downsample") as info:
        list(iter_frames(path, FrameSettings(downsample=20)))
    assert not isinstance(info.value, VideoReadError)


def test_grayscale_odd_size_and_single_frame_videos(tmp_path):
    gray = [np.full((98, 130), 40 * i, np.uint8) for i in range(4)]
    frames = list(iter_frames(make_video(tmp_path / "gray.avi", gray), FrameSettings(every=1, downsample=3)))
    assert len(frames) == 4 and frames[0].image.shape == (33, 43, 3)
    assert all(np.array_equal(f.image[..., 0], f.image[..., 2]) for f in frames)
    single = make_video(tmp_path / "one.mp4", [np.full((64, 96, 3), 200, np.uint8)])
    assert [f.index for f in iter_frames(single, FrameSettings(downsample=1))] == [0]
    assert probe(single).frames == 1
    # A decoder handing out one channel still gives BGR frames.
    assert _shape(np.zeros((4, 6), np.uint8), (0, 0, 4, 6), (2, 3)).shape == (2, 3, 3)


def test_probe():
    info = probe(clip("bottle-detection.mp4"))
    assert (info.height, info.width, info.frames) == (360, 640, 1189)
    assert info.fps == pytest.approx(29.833, abs=1e-3)


def _corrupt_copies(tmp_path: Path) -> list[Path]:
    bottle, milk = clip("bottle-detection.mp4"), clip("milk.mkv")
    truncated_mp4 = tmp_path / "truncated.mp4"
    truncated_mp4.write_bytes(bottle.read_bytes()[:250_000])  # index (moov) at the end: gone
    truncated_mkv = tmp_path / "truncated.mkv"
    truncated_mkv.write_bytes(milk.read_bytes()[:60_000])  # opens, then stops a third of the way
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(100_000))
    empty = tmp_path / "empty.mp4"
    empty.touch()
    return [truncated_mp4, truncated_mkv, noise, empty, tmp_path / "missing.mp4"]


def test_unreadable_files_raise_video_read_error_naming_the_file(tmp_path):
    for path in _corrupt_copies(tmp_path):
        with pytest.raises(VideoReadError, match=path.name):
            list(iter_frames(path, FrameSettings(every=1)))
        if path.suffix != ".mkv":  # the truncated mkv has a valid header and first frame
            with pytest.raises(VideoReadError, match=path.name):
                probe(path)


def test_a_range_with_no_frames_is_an_error(tmp_path):
    path = shutil.copy(clip("milk.mkv"), tmp_path / "milk.mkv")
    with pytest.raises(VideoReadError, match="milk.mkv.*start_s"):
        list(iter_frames(Path(path), FrameSettings(start_s=100)))
