"""Procedural synthwave clips: the embedded default dataset, made offline in seconds.

A clip is a run of shots, each a scene drawn from a seeded random generator: a gradient sky
with stars, clouds or neither, a striped sun (its size, height and colours), zero to two
mountain ridges, and a neon perspective grid (its colour, density and speed). Within a shot
the sun drifts, the grid scrolls, stars twinkle and clouds pass; the next shot is a new
scene, as in the cut-heavy videos the pipeline is for. The same seed renders the same clips.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synthwave.atomic import atomic_path

Colour = tuple[float, float, float]  # BGR, as OpenCV writes


def _hsv(hue: float, saturation: float, value: float) -> Colour:
    """A BGR colour from hue in degrees and saturation, value in [0, 1]."""
    pixel = np.array([[[hue / 2 % 180, saturation * 255, value * 255]]], np.float32).astype(np.uint8)
    return tuple(float(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0])


@dataclass(frozen=True)
class Scene:
    """What one clip shows; sizes and positions are fractions of the frame's height or width."""

    sky_top: Colour
    sky_low: Colour
    sun_top: Colour
    sun_low: Colour
    grid: Colour
    floor: Colour
    ridges: tuple[tuple[Colour, float, tuple[float, ...]], ...]  # colour, height, 3 frequencies and 3 phases
    horizon: float
    sun_radius: float
    sun_x: float
    sun_height: float  # of the sun's centre above the horizon, in radii
    grid_columns: int
    grid_speed: float  # rows passing per second
    sky_detail: str  # "stars", "clouds" or "none"
    seed: int


def scene(index: int, seed: int = 0) -> Scene:
    """Scene `index`: a different draw for every index, the same for every run."""
    rng = np.random.default_rng([seed, index])
    warm = rng.uniform(-40, 40)  # shifts the whole palette around magenta/orange
    ridges = tuple(
        (_hsv(rng.uniform(220, 300), rng.uniform(0.5, 0.9), rng.uniform(0.08, 0.3) * (1 + depth)),
         rng.uniform(0.04, 0.16) / (1 + depth), (*rng.uniform(2, 12, 3), *rng.uniform(0, 6.3, 3)))
        for depth in range(rng.integers(0, 3))
    )  # fmt: skip
    return Scene(
        sky_top=_hsv(rng.uniform(230, 290), rng.uniform(0.6, 1), rng.uniform(0.1, 0.35)),
        sky_low=_hsv(320 + warm, rng.uniform(0.5, 0.9), rng.uniform(0.7, 1)),
        sun_top=_hsv(rng.uniform(40, 60), rng.uniform(0.5, 0.9), 1.0),
        sun_low=_hsv(rng.uniform(330, 380), rng.uniform(0.7, 1), rng.uniform(0.85, 1)),
        grid=_hsv(rng.choice([300, 180, 120, 30, 330]) + rng.uniform(-15, 15), 0.8, 1.0),
        floor=_hsv(rng.uniform(250, 300), 0.8, rng.uniform(0.05, 0.15)),
        ridges=ridges[::-1],  # far (lighter, taller) first, the near ridge drawn over it
        horizon=rng.uniform(0.55, 0.7),
        sun_radius=rng.uniform(0.12, 0.3),
        sun_x=rng.uniform(0.25, 0.75),
        sun_height=rng.uniform(-0.2, 0.9),
        grid_columns=int(rng.integers(6, 14)),
        grid_speed=rng.uniform(0.3, 1.5),
        sky_detail=str(rng.choice(["stars", "clouds", "none"])),
        seed=int(rng.integers(2**31)),
    )


def _lerp(a: Colour, b: Colour, t: np.ndarray) -> np.ndarray:
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a_ + (b_ - a_) * t[..., None]


def _sky(s: Scene, height: int, width: int, horizon: int, t: float) -> np.ndarray:
    sky = np.repeat(_lerp(s.sky_top, s.sky_low, np.linspace(0, 1, horizon, dtype=np.float32))[:, None], width, 1)
    rng = np.random.default_rng(s.seed)  # the same stars and clouds in every frame of the clip
    if s.sky_detail == "stars":
        count = width * horizon // 400
        ys, xs = rng.integers(0, int(horizon * 0.7), count), rng.integers(0, width, count)
        twinkle = 0.6 + 0.4 * np.sin(t * rng.uniform(1, 4, count) + rng.uniform(0, 6.3, count))
        sky[ys, xs] = sky[ys, xs] * (1 - twinkle[:, None]) + 255 * twinkle[:, None]
    elif s.sky_detail == "clouds":
        yy, xx = np.mgrid[0:horizon, 0:width].astype(np.float32)
        for _ in range(4):
            cy, half_h = rng.uniform(0.1, 0.8) * horizon, rng.uniform(0.02, 0.06) * height
            cx = (rng.uniform(0, 1) + t * rng.uniform(0.01, 0.04)) % 1.2 * width - 0.1 * width
            half_w = rng.uniform(0.15, 0.35) * width
            cover = np.clip(1 - ((yy - cy) / half_h) ** 2 - ((xx - cx) / half_w) ** 2, 0, 1)[..., None] * 0.6
            sky = sky * (1 - cover) + np.asarray(s.sky_low, np.float32) * 1.1 * cover
    return sky


def render_frame(height: int, width: int, t: float, index: int, seed: int = 0) -> np.ndarray:
    """One BGR frame of scene `index`, `t` seconds into its shot."""
    s = scene(index, seed)
    horizon = int(height * s.horizon)
    frame = np.zeros((height, width, 3), np.float32)
    frame[:horizon] = _sky(s, height, width, horizon, t)

    # Sun: a disc drifting up and down, with horizontal cut-out stripes in its lower half.
    radius = height * s.sun_radius
    cy = horizon - radius * (s.sun_height + 0.15 * np.sin(0.5 * t + index))
    cx = width * s.sun_x
    yy, xx = np.mgrid[0:horizon, 0:width].astype(np.float32)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    stripes = (yy > cy) & (np.sin(((yy - cy) / (radius * 0.18) + 1.5 * t) * np.pi) > 0.4)
    sun = _lerp(s.sun_top, s.sun_low, np.clip((yy - (cy - radius)) / (2 * radius), 0, 1))
    mask = inside & ~stripes
    frame[:horizon][mask] = sun[mask]

    # Mountains: jagged ridges sitting on the horizon, the far one first.
    xs = np.arange(width, dtype=np.float32) / width
    for colour, ridge_height, (f1, f2, f3, p1, p2, p3) in s.ridges:
        shape = np.abs(np.sin(xs * f1 + p1)) + 0.5 * np.abs(np.sin(xs * f2 * 2 + p2)) + 0.25 * np.sin(xs * f3 * 4 + p3)
        ridge = horizon - height * ridge_height * shape / 1.75
        frame[:horizon][yy >= ridge[None, :]] = colour

    # Floor: dark, with a neon grid in perspective scrolling towards the viewer.
    frame[horizon:] = s.floor
    out = np.clip(frame, 0, 255).astype(np.uint8)
    vanish_x, depth = width / 2, height - horizon
    for k in range(-2 * s.grid_columns, 2 * s.grid_columns + 1):  # lines converging on the vanishing point
        x_bottom = int(vanish_x + k * width / s.grid_columns)
        cv2.line(out, (int(vanish_x + k * width / (10 * s.grid_columns)), horizon), (x_bottom, height - 1),
                 s.grid, 1, cv2.LINE_AA)  # fmt: skip
    for i in range(12):  # horizontal lines: z in (0, 1], spacing shrinks with distance
        z = ((i + (t * s.grid_speed) % 1.0) / 12) ** 2
        cv2.line(out, (0, int(horizon + z * depth)), (width - 1, int(horizon + z * depth)), s.grid, 1, cv2.LINE_AA)
    return out


def render_demo_videos(
    out_dir: Path, count: int = 3, shots: int = 4, shot_frames: int = 72, fps: int = 24,
    size: tuple[int, int] = (360, 640), seed: int = 0,
) -> list[Path]:  # fmt: skip
    """Write `count` clips of `shots` shots of `shot_frames` frames each, scenes drawn from `seed`,
    to out_dir (skipping clips already there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = size
    paths = []
    for clip in range(count):
        path = out_dir / f"shots-{seed}-{clip:02d}-{shots}x{shot_frames}-{height}x{width}.mp4"
        frames = (
            render_frame(height, width, n / fps, shot, seed)
            for shot in range(clip * shots, (clip + 1) * shots)
            for n in range(shot_frames)
        )
        paths.append(write_clip(path, frames, fps, size))
    return paths


def write_clip(path: Path, frames: Iterable[np.ndarray], fps: int, size: tuple[int, int]) -> Path:
    """An mp4v file of BGR `frames` of `size` (HxW), written under a temp name; kept if it exists."""
    if not path.exists():
        with atomic_path(path) as tmp:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size[::-1])
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {tmp}: no mp4v encoder in this build")
            for frame in frames:
                writer.write(frame)
            writer.release()
    return path
