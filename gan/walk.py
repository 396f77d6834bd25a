"""A walk through a run's latent space, as an MP4 video.

The walk passes through random latent points, `segment_seconds` from one to the next,
along great circles (slerp): Gaussian latents lie near a sphere, and a straight line
between two of them cuts through its inside, where the generator saw no noise and draws
dull images. Each segment is eased, so the video slows into each point instead of
turning sharply.

Frames come from the EMA generator when the run has one (`DCGAN.sample`), a batch at a
time, and go straight to the writer: memory does not grow with the video's length.
OpenCV's `VideoWriter` writes them with the `mp4v` codec (MPEG-4 Part 2), because the
opencv-python wheels have no H.264 encoder: VLC, mpv and QuickTime play it, most browsers
do not, so the Prefect UI and the report show a strip of its frames instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from gan.images import to_uint8
from synthwave.atomic import atomic_open, atomic_path
from synthwave.errors import UserError
from synthwave.settings import WalkSettings

if TYPE_CHECKING:
    from gan.step import DCGAN

FILENAME = "walk.mp4"  # the walk the train flow leaves in the run directory
STRIP_FILENAME = "walk.png"


class WalkError(UserError, ValueError):
    """A walk cannot be written (no run, no checkpoint, no output folder); says what to do."""


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from a (t=0) to b (t=1) along the last axis; leading axes broadcast.

    Nearly parallel or opposite vectors have no single great circle: they fall back to a straight line.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, np.float64)[..., None]
    norms = np.linalg.norm(a, axis=-1, keepdims=True) * np.linalg.norm(b, axis=-1, keepdims=True)
    omega = np.arccos(np.clip(np.sum(a * b, axis=-1, keepdims=True) / np.maximum(norms, 1e-12), -1.0, 1.0))
    sin = np.sin(omega)
    straight = sin < 1e-6
    spherical = (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.where(straight, 1.0, sin)
    return np.where(straight, (1.0 - t) * a + t * b, spherical)


def ease(t: np.ndarray) -> np.ndarray:
    """Smoothstep: zero speed at both ends of a segment."""
    return t * t * (3.0 - 2.0 * t)


def latent_batches(settings: WalkSettings, latent_dim: int) -> Iterator[np.ndarray]:
    """The walk's latent vectors, `batch_size` frames at a time, computed as they are needed."""
    per_segment = max(1, round(settings.segment_seconds * settings.fps))
    points = np.random.default_rng(settings.seed).standard_normal((settings.frames // per_segment + 2, latent_dim))
    for start in range(0, settings.frames, settings.batch_size):
        index = np.arange(start, min(start + settings.batch_size, settings.frames))
        segment, offset = np.divmod(index, per_segment)
        yield slerp(points[segment], points[segment + 1], ease(offset / per_segment)).astype(np.float32)


def restore(run_dir: Path) -> DCGAN:
    """The run's model at its latest checkpoint (gan.loop.restore, imported only to render:
    reading a walk's frames needs no TensorFlow)."""
    from gan.loop import restore

    return restore(run_dir)


def write_walk(settings: WalkSettings) -> Path:
    """Render the walk into `settings.out`, atomically; returns the path."""
    out = settings.out
    if not out.parent.is_dir():
        raise WalkError(f"output folder {out.parent} does not exist: create it or give another --out")
    gan = restore(settings.run_dir)
    height, width = settings.size
    source_height, source_width = gan.image_shape[:2]
    # Area averaging when shrinking (no moiré), bicubic when enlarging (smooth, sharper than bilinear).
    shrink = height <= source_height and width <= source_width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), settings.fps, (width, height))
        if not writer.isOpened():
            raise WalkError(f"OpenCV cannot write MPEG-4 video to {out}: check the folder is writable")
        try:
            for latents in latent_batches(settings, gan.settings.model.latent_dim):
                for frame in to_uint8(gan.sample(latents).numpy()):
                    frame = cv2.resize(frame, (width, height), interpolation=interpolation)
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return out


def frame_strip(video: Path, count: int = 8, height: int = 96) -> np.ndarray:
    """`count` frames evenly spaced over a video, side by side, at most `height` pixels tall (RGB)."""
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
    frames = []
    for index in range(total):
        if not capture.grab():
            break
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                tall = min(height, frame.shape[0])  # shrink only: a strip adds no detail
                size = (max(1, round(frame.shape[1] * tall / frame.shape[0])), tall)
                frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    capture.release()
    if not frames:
        raise WalkError(f"{video} has no frame OpenCV can read: render it again with `synthwave walk`")
    return cv2.cvtColor(np.hstack(frames), cv2.COLOR_BGR2RGB)


def save_strip(video: Path, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        Image.fromarray(frame_strip(video)).save(handle, format="PNG")
    return path
