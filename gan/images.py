"""Image grids from generator output."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from synthwave.atomic import atomic_open


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> [0, 255] uint8."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile N HxWx3 images into one picture, near-square, with a thin dark border."""
    images = to_uint8(images)
    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), 16, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (height + pad), pad + c * (width + pad)
        canvas[y : y + height, x : x + width] = image
    return canvas


def save_grid(images: np.ndarray, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        Image.fromarray(grid(images)).save(handle, format="PNG")
    return path
