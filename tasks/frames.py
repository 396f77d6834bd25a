"""Frames out of a video in one streaming pass: constant memory whatever its length.

Skipped frames are only grabbed (demuxed and decoded, never converted to BGR), kept ones
are retrieved, centre-cropped and resized. There is no per-frame seeking: on H.264 that is
10-100x slower than decoding straight through. Times follow the frames' own timestamps
(CAP_PROP_POS_MSEC), so variable-frame-rate video is cut at the right moments; a frame
"at" time t is the one nearest to t, i.e. within half a frame period.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synthwave.errors import UserError
from synthwave.settings import FrameSettings

# A stream that stops before this share of the duration its header announces was cut short.
_TRUNCATED_SHARE = 0.9


class VideoReadError(UserError, ValueError):
    """The file is missing, empty, not a video OpenCV can decode, or has no frames."""


@dataclass(frozen=True)
class VideoInfo:
    frames: int  # the container's count: an estimate for some formats (off by one or so)
    fps: float
    height: int
    width: int


@dataclass(frozen=True)
class Frame:
    index: int  # position in the whole video, from 0
    timestamp_s: float
    image: np.ndarray  # HxWx3 BGR uint8, already cropped and resized


def _open(path: Path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such video file; check the path or download it again")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: the file is empty (0 bytes); download it again")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise VideoReadError(f"{path}: OpenCV cannot open it: corrupt or not a video; download it again")
    return capture


def _info(capture: cv2.VideoCapture) -> VideoInfo:
    return VideoInfo(
        frames=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
        fps=max(float(capture.get(cv2.CAP_PROP_FPS)), 0.0),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
    )


def _no_frames(path: Path) -> VideoReadError:
    return VideoReadError(f"{path}: no frame could be decoded (corrupt, truncated or zero frames); download it again")


def probe(path: Path) -> VideoInfo:
    """Header facts of a video; decodes its first frame to prove it has one."""
    capture = _open(path)
    try:
        info = _info(capture)
        if not capture.grab():
            raise _no_frames(path)
        return info
    finally:
        capture.release()


def _crop_box(height: int, width: int, aspect: float | None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred crop with width/height == aspect."""
    if aspect is None:
        return 0, 0, height, width
    if width > height * aspect:
        crop_w = round(height * aspect)
        return 0, (width - crop_w) // 2, height, crop_w
    crop_h = round(width / aspect)
    return (height - crop_h) // 2, 0, crop_h, width


def output_size(height: int, width: int, settings: FrameSettings) -> tuple[int, int]:
    """(height, width) of a kept frame: after the crop, then `size` or `downsample`."""
    _, _, crop_h, crop_w = _crop_box(height, width, settings.crop_aspect)
    if crop_h < 1 or crop_w < 1:
        raise ValueError(f"crop_aspect={settings.crop_aspect} leaves nothing of a {height}x{width} frame")
    if settings.size is not None:
        return settings.size
    out = (round(crop_h / settings.downsample), round(crop_w / settings.downsample))
    if min(out) < 1:
        raise ValueError(f"downsample={settings.downsample} shrinks a {crop_h}x{crop_w} frame to nothing")
    return out


def _shape(image: np.ndarray, box: tuple[int, int, int, int], out: tuple[int, int]) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    top, left, crop_h, crop_w = box
    image = image[top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == out:
        return np.ascontiguousarray(image)
    # INTER_AREA averages the source pixels: no aliasing when shrinking.
    return cv2.resize(image, (out[1], out[0]), interpolation=cv2.INTER_AREA)


class _Stride:
    """Which frames to keep, from their index and timestamp alone: no pixels needed."""

    def __init__(self, settings: FrameSettings, half_period: float) -> None:
        self.every = settings.stride_frames
        self.seconds = settings.every_seconds
        self.half_period = half_period
        self.first: int | None = None
        self.next_time = 0.0

    def keep(self, index: int, timestamp: float) -> bool:
        if self.first is None:
            self.first, self.next_time = index, timestamp
        if self.every is not None:
            return (index - self.first) % self.every == 0
        if timestamp < self.next_time - self.half_period:
            return False
        # Targets are first + k * seconds (no drift); skip those this frame already covers.
        while self.next_time <= timestamp + self.half_period:
            self.next_time += self.seconds
        return True


def iter_frames(path: Path, settings: FrameSettings) -> Iterator[Frame]:
    """Yield the kept frames of one video in order; VideoReadError if there are none."""
    path = Path(path)
    capture = _open(path)
    try:
        yield from _frames(path, capture, settings)
    finally:
        capture.release()


def _frames(path: Path, capture: cv2.VideoCapture, settings: FrameSettings) -> Iterator[Frame]:
    info = _info(capture)
    box = _crop_box(info.height, info.width, settings.crop_aspect)
    out = output_size(info.height, info.width, settings)
    half_period = 0.5 / info.fps if info.fps > 0 else 0.0
    if settings.start_s > 0:
        # One seek (OpenCV lands on the frame nearest start_s); the loop trims any overshoot.
        capture.set(cv2.CAP_PROP_POS_MSEC, settings.start_s * 1000)
    index = int(capture.get(cv2.CAP_PROP_POS_FRAMES)) - 1
    stride = _Stride(settings, half_period)
    grabbed = kept = 0
    timestamp = 0.0
    while capture.grab():
        index += 1
        grabbed += 1
        timestamp = _timestamp(capture, index, info.fps)
        if timestamp < settings.start_s - half_period:
            continue
        if settings.end_s is not None and timestamp >= settings.end_s - half_period:
            break
        if not stride.keep(index, timestamp):
            continue
        ok, image = capture.retrieve()
        if not ok:
            raise VideoReadError(f"{path}: frame {index} could not be decoded (corrupt video); download it again")
        yield Frame(index, timestamp, _shape(image, box, out))
        kept += 1
        if kept == settings.max_frames:
            return
    else:
        if grabbed == 0 and settings.start_s == 0:
            raise _no_frames(path)
        if grabbed > 0:
            _check_complete(path, info, timestamp, half_period)
    if kept == 0:
        raise VideoReadError(
            f"{path}: no frame between start_s={settings.start_s} and end_s={settings.end_s} "
            f"(the video is about {_duration(info):.1f} s long); change start_s/end_s"
        )


def _timestamp(capture: cv2.VideoCapture, index: int, fps: float) -> float:
    """Presentation time of the frame just grabbed; index/fps where the container has none."""
    msec = capture.get(cv2.CAP_PROP_POS_MSEC)
    if msec > 0 or index == 0 or fps <= 0:
        return msec / 1000
    return index / fps


def _duration(info: VideoInfo) -> float:
    return info.frames / info.fps if info.fps > 0 else 0.0


def _check_complete(path: Path, info: VideoInfo, last_time: float, half_period: float) -> None:
    """The stream ran out: refuse one cut short (e.g. a partial download) by its header."""
    duration = _duration(info)
    if last_time + 4 * half_period < _TRUNCATED_SHARE * duration:
        raise VideoReadError(
            f"{path}: the video stops at {last_time:.1f} s of the {duration:.1f} s its header announces "
            "(truncated or corrupt); download it again"
        )
