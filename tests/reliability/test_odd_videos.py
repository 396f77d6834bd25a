"""Videos as cameras and phones make them, which OpenCV's own writer cannot: made with FFmpeg.

Rotated (display-matrix metadata), 10-bit and grayscale H.264, and variable frame rate.
Each ingests to what a player shows: upright frames, 8-bit colour, frames cut at the
right times. Their frames differ only by a hue drift, one image to curation: it is off here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from synthwave.settings import FrameSettings
from tasks.frames import iter_frames, probe
from tasks.shards import write_video_shards

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="pip install -e '.[test]'")

HEIGHT, WIDTH, FRAMES, FPS = 120, 160, 60, 30
MARK = 24  # a white square in the top-left corner of every frame shows which way is up


def _frames() -> bytes:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    out = []
    for i in range(FRAMES):
        frame = np.stack([(x * 255 // WIDTH + 4 * i) % 256, y * 255 // HEIGHT, np.full_like(x, 4 * i)], -1)
        frame = frame.astype(np.uint8)
        frame[:MARK, :MARK] = 255
        out.append(frame.tobytes())
    return b"".join(out)


def ffmpeg(path: Path, *output_args: str) -> Path:
    """Encode the test frames (BGR, 30 fps) with FFmpeg; output_args choose codec and format."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
        *output_args, str(path),
    ]  # fmt: skip
    subprocess.run(command, input=_frames(), check=True, capture_output=True)
    return path


def h264(path: Path, pix_fmt: str = "yuv420p", *extra: str) -> Path:
    return ffmpeg(path, *extra, "-c:v", "libx264", "-pix_fmt", pix_fmt)


def mark_corner(image: np.ndarray) -> tuple[str, str]:
    """Which corner (vertical, horizontal) holds the white mark."""
    h, w = image.shape[:2]
    corners = {
        ("top", "left"): image[: h // 5, : w // 5],
        ("top", "right"): image[: h // 5, -w // 5 :],
        ("bottom", "left"): image[-h // 5 :, : w // 5],
        ("bottom", "right"): image[-h // 5 :, -w // 5 :],
    }
    return max(corners, key=lambda corner: corners[corner].min(axis=-1).mean())


def test_a_rotated_phone_video_ingests_upright(tmp_path):
    plain = h264(tmp_path / "plain.mp4")
    rotated = tmp_path / "rotated.mp4"  # the same stream, tagged "display rotated 90 degrees anticlockwise"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", "90", "-i", str(plain),
         "-c", "copy", str(rotated)],
        check=True, capture_output=True,
    )  # fmt: skip
    info = probe(rotated)
    assert (info.height, info.width) == (WIDTH, HEIGHT)  # portrait, as a player shows it
    # Each video's own size halved (no crop to the default size), so the whole turned frame is seen.
    halved = FrameSettings(every=10, downsample=2, dedupe=False)
    manifest = write_video_shards(rotated, "rotated", halved, 1.0, tmp_path / "out")
    assert (manifest["frames"], manifest["height"], manifest["width"]) == (6, WIDTH // 2, HEIGHT // 2)
    first = next(iter_frames(rotated, halved))
    assert first.image.shape == (WIDTH // 2, HEIGHT // 2, 3)
    assert mark_corner(first.image) == ("bottom", "left")  # top-left turned a quarter anticlockwise
    assert mark_corner(next(iter_frames(plain, halved)).image) == ("top", "left")


def test_10_bit_h264_ingests_as_the_same_8_bit_colour(tmp_path):
    halved = FrameSettings(every=10, downsample=2)
    eight = [f.image for f in iter_frames(h264(tmp_path / "8.mp4"), halved)]
    ten = [f.image for f in iter_frames(h264(tmp_path / "10.mp4", "yuv420p10le"), halved)]
    assert len(ten) == len(eight) == 6
    assert all(image.dtype == np.uint8 and image.shape == (HEIGHT // 2, WIDTH // 2, 3) for image in ten)
    # Both are lossy encodings of the same frames: close, not equal.
    difference = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(ten, eight, strict=True)])
    assert difference < 4, difference


def test_grayscale_h264_ingests_as_three_equal_channels(tmp_path):
    video = h264(tmp_path / "gray.mp4", "gray")
    manifest = write_video_shards(video, "gray", FrameSettings(every=10, dedupe=False), 1.0, tmp_path / "out")
    assert (manifest["frames"], manifest["channels"]) == (6, 3)
    image = next(iter_frames(video, FrameSettings(every=10))).image.astype(int)
    assert image.shape[2] == 3 and np.abs(image[..., 0] - image[..., 2]).max() <= 1
    assert image.std() > 10  # a picture, not a blank


def test_variable_frame_rate_is_cut_by_time_not_by_frame_count(tmp_path):
    # One second at 30 fps, then 10 fps: frame n shows at n/30 s, then at 1 + (n - 30)/10 s.
    vfr = "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'"
    video = h264(tmp_path / "vfr.mkv", "yuv420p", "-vf", vfr, "-fps_mode", "vfr")
    kept = list(iter_frames(video, FrameSettings(every_seconds=0.5)))
    assert [frame.index for frame in kept] == [0, 15, 30, 35, 40, 45, 50, 55]
    assert [round(frame.timestamp_s, 2) for frame in kept] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    # By count, every 10th frame is kept whatever its time; the whole stream is read (not taken as truncated).
    manifest = write_video_shards(video, "vfr", FrameSettings(every=10, dedupe=False), 1.0, tmp_path / "out")
    assert (manifest["frames"], manifest["first_frame_index"], manifest["last_frame_index"]) == (6, 0, 50)
