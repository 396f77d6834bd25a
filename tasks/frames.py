"""Frames out of a video in streaming passes: constant memory whatever its length.

Skipped frames are only grabbed (demuxed and decoded, never converted to BGR), kept ones
are retrieved, centre-cropped and resized. There is no per-frame seeking: on H.264 that is
10-100x slower than decoding straight through. Times follow the frames' own timestamps
(CAP_PROP_POS_MSEC), so variable-frame-rate video is cut at the right moments; a frame
"at" time t is the one nearest to t, i.e. within half a frame period.

A long video can also be read as contiguous segments, each by its own capture with one
seek to its first frame (`plan_segments`, `FrameReader`): FFmpeg's frame threads keep
about 1.6 of 2 cores busy on H.264, two single-threaded segments both. A seek by frame
number is only as exact as the container's timestamps, so each boundary is checked: the
frame a segment lands on must carry the timestamp the previous segment saw at that index.
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


@dataclass(frozen=True)
class Segment:
    start: int = 0  # index of its first frame
    stop: int | None = None  # index of the next segment's first frame; None: to the end of the video


WHOLE = Segment()
# Below this many frames a segment does not pay for its seek (up to a GOP decoded twice).
MIN_SEGMENT_FRAMES = 400


def plan_segments(info: VideoInfo, settings: FrameSettings, cpus: int) -> list[Segment]:
    """Contiguous frame ranges to read concurrently: one per CPU, each of MIN_SEGMENT_FRAMES or
    more; the whole video when a frame stride is not the only selection (times, limits)."""
    plain = settings.stride_frames is not None and settings.start_s == 0 and settings.end_s is None
    parts = min(cpus, info.frames // MIN_SEGMENT_FRAMES) if plain and settings.max_frames is None else 1
    if parts < 2:
        return [WHOLE]
    # The header's frame count can be off by a few: the last segment runs to the end, whatever it is.
    starts = [info.frames * part // parts for part in range(parts)]
    return [Segment(start, stop) for start, stop in zip(starts, [*starts[1:], None], strict=True)]


def _open(path: Path, threads: int = 0) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"{path}: no such video file; check the path or download it again")
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: the file is empty (0 bytes); download it again")
    # threads 0: FFmpeg's decoder threads as OpenCV sets them (one per CPU).
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
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
    """(height, width) of a kept frame: after the crop (by default to `size`'s aspect), then `size` or `downsample`."""
    _, _, crop_h, crop_w = _crop_box(height, width, settings.aspect)
    if crop_h < 1 or crop_w < 1:
        crop = f"a crop to W:H {settings.aspect:g} (crop_aspect, else size's)"
        raise ValueError(f"{crop} leaves nothing of a {height}x{width} frame")
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

    def __init__(self, settings: FrameSettings, half_period: float, first: int | None = None) -> None:
        """`first`: the index strides count from (default: the first frame seen); a segment's
        reader passes 0, so segments keep the frames one pass over the video would."""
        self.every = settings.stride_frames
        self.seconds = settings.every_seconds
        self.half_period = half_period
        self.first = first
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
    with FrameReader(path, settings) as reader:
        yield from reader


class FrameReader:
    """One streaming pass over the kept frames of a video, or of one `Segment` of it.

    A segment after the first starts with one seek; `first_msec` is the timestamp of the frame
    it landed on. A segment with a stop grabs the frame at `stop` without keeping it, to record
    its timestamp as `stop_msec`: the next segment's `first_msec` must equal it (`continues`).
    """

    def __init__(self, path: Path, settings: FrameSettings, segment: Segment = WHOLE, threads: int = 0) -> None:
        self.path, self.settings, self.segment = Path(path), settings, segment
        self.capture = _open(self.path, threads)
        self.info = _info(self.capture)
        self.first_msec: float | None = None
        self.stop_msec: float | None = None
        self.decoded = 0  # frames of its own range passed over so far, kept or not (tasks/progress.py)

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.capture.release()

    def continues(self, previous: FrameReader) -> bool:
        """True if this segment starts exactly where `previous` stopped (by real timestamps)."""
        return previous.stop_msec is not None and previous.stop_msec > 0 and self.first_msec == previous.stop_msec

    def __iter__(self) -> Iterator[Frame]:
        path, capture, info, settings, segment = self.path, self.capture, self.info, self.settings, self.segment
        box = _crop_box(info.height, info.width, settings.aspect)
        out = output_size(info.height, info.width, settings)
        half_period = 0.5 / info.fps if info.fps > 0 else 0.0
        if segment.start > 0:
            # Its index is the plan's, not OpenCV's count: `continues` checks the frame it lands on.
            capture.set(cv2.CAP_PROP_POS_FRAMES, segment.start)
            index = segment.start - 1
        else:
            if settings.start_s > 0:
                # One seek (OpenCV lands on the frame nearest start_s); the loop trims any overshoot.
                capture.set(cv2.CAP_PROP_POS_MSEC, settings.start_s * 1000)
            index = int(capture.get(cv2.CAP_PROP_POS_FRAMES)) - 1
        stride = _Stride(settings, half_period, first=0 if segment.start else None)
        grabbed = kept = 0
        timestamp = 0.0
        while capture.grab():
            index += 1
            grabbed += 1
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            if self.first_msec is None:
                self.first_msec = msec
            if index == segment.stop:
                self.stop_msec = msec
                return
            self.decoded += 1
            timestamp = _timestamp(msec, index, info.fps)
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
            if grabbed == 0 and settings.start_s == 0 and segment.start == 0:
                raise _no_frames(path)
            if grabbed > 0:
                _check_complete(path, info, timestamp, half_period)
        if kept == 0 and segment.start == 0:
            raise VideoReadError(
                f"{path}: no frame between start_s={settings.start_s} and end_s={settings.end_s} "
                f"(the video is about {_duration(info):.1f} s long); change start_s/end_s"
            )


def _timestamp(msec: float, index: int, fps: float) -> float:
    """Presentation time in seconds of a frame OpenCV timed at `msec`; index/fps where the container has none."""
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
