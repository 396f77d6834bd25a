"""Procedural synthwave clips: the embedded default dataset, made offline in seconds.

Each clip is a gradient sky, a striped sun that rises, a mountain silhouette and a neon
perspective grid scrolling towards the viewer; palette, speed and sun size vary per clip
so the GAN has something to learn.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synthwave.atomic import atomic_path

# (sky top, sky horizon, sun top, sun bottom, grid, mountains) in BGR
PALETTES = [
    ((60, 10, 30), (140, 40, 230), (80, 230, 255), (120, 40, 255), (255, 60, 230), (50, 10, 40)),
    ((40, 5, 10), (180, 60, 120), (60, 200, 255), (90, 60, 250), (255, 200, 40), (40, 20, 30)),
    ((70, 20, 50), (90, 90, 255), (120, 255, 255), (60, 120, 255), (200, 80, 255), (60, 20, 60)),
    ((30, 0, 20), (200, 30, 160), (90, 250, 250), (150, 50, 255), (120, 255, 120), (30, 10, 30)),
]


def _lerp(a: tuple[int, ...], b: tuple[int, ...], t: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ + (b_ - a_) * t[..., None]


def render_frame(height: int, width: int, t: float, clip: int) -> np.ndarray:
    """One BGR frame of clip `clip` at time `t` seconds."""
    sky_top, sky_low, sun_top, sun_low, grid, hills = PALETTES[clip % len(PALETTES)]
    horizon = int(height * 0.62)
    rows = np.linspace(0, 1, horizon, dtype=np.float32)
    frame = np.zeros((height, width, 3), np.float32)
    frame[:horizon] = _lerp(sky_top, sky_low, rows)[:, None, :]

    # Sun: a disc rising slowly, with horizontal cut-out stripes in its lower half.
    radius = height * (0.22 + 0.03 * (clip % 3))
    cy = horizon - radius * (0.35 + 0.25 * (0.5 + 0.5 * np.sin(0.4 * t + clip)))
    cx = width * (0.5 + 0.12 * np.sin(0.7 * clip))
    yy, xx = np.mgrid[0:horizon, 0:width].astype(np.float32)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    rel = np.clip((yy - (cy - radius)) / (2 * radius), 0, 1)
    stripe_phase = (yy - cy) / (radius * 0.18) + 1.5 * t
    stripes = (yy > cy) & (np.sin(stripe_phase * np.pi) > 0.4)
    sun = _lerp(sun_top, sun_low, rel)
    mask = inside & ~stripes
    frame[:horizon][mask] = sun[mask]

    # Mountains: a jagged silhouette sitting on the horizon.
    xs = np.arange(width, dtype=np.float32)
    ridge = horizon - height * (
        0.06 + 0.05 * np.abs(np.sin(xs / width * (5 + clip) + 0.3 * clip)) + 0.03 * np.sin(xs / width * 23)
    )
    hill_mask = yy >= ridge[None, :]
    frame[:horizon][hill_mask] = hills

    # Floor: dark, with a neon grid in perspective scrolling towards the viewer.
    frame[horizon:] = (20, 0, 15)
    out = np.clip(frame, 0, 255).astype(np.uint8)
    vanish_x, depth = width / 2, height - horizon
    for k in range(-12, 13):  # lines converging on the vanishing point
        x_bottom = int(vanish_x + k * width / 8)
        cv2.line(out, (int(vanish_x + k * width / 80), horizon), (x_bottom, height - 1), grid, 1, cv2.LINE_AA)
    speed = 0.6 + 0.2 * clip
    for i in range(12):  # horizontal lines: z in (0, 1], spacing shrinks with distance
        z = ((i + (t * speed) % 1.0) / 12) ** 2
        y = int(horizon + z * depth)
        cv2.line(out, (0, y), (width - 1, y), grid, 1, cv2.LINE_AA)
    return out


def render_demo_videos(
    out_dir: Path, count: int = 3, seconds: float = 12.0, fps: int = 24, size: tuple[int, int] = (360, 640)
) -> list[Path]:
    """Write `count` clips to out_dir (skipping ones already there) and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = size
    paths = []
    for clip in range(count):
        path = out_dir / f"synthwave-{clip}.mp4"
        if not path.exists():
            with atomic_path(path) as tmp:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write {tmp}: no mp4v encoder in this build")
                for n in range(int(seconds * fps)):
                    writer.write(render_frame(height, width, n / fps, clip))
                writer.release()
        paths.append(path)
    return paths
