"""Small videos made here, and what a folder holds: shared by the reliability tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from tasks.shards import verify_manifest


def make_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """An MJPEG .avi by OpenCV's own writer, which (unlike its FFmpeg one) keeps odd sizes."""
    height, width = frames[0].shape[:2] if frames else (48, 64)
    color = not frames or frames[0].ndim == 3
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    writer = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, (width, height), color)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def gradient(height: int, width: int, shade: int) -> np.ndarray:
    """A frame with structure (not flat), so every frame encodes to something."""
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([(x + shade) % 256, (y + 2 * shade) % 256, np.full_like(x, shade % 256)]).astype(np.uint8)


def everything(folder: Path) -> list[str]:
    """Every path under `folder`, hidden ones included, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def assert_dataset_sound(data_dir: Path) -> dict:
    """dataset.json lists only shards that exist and match their manifest's checksums."""
    dataset = json.loads((data_dir / "dataset.json").read_text())
    for video in dataset["videos"]:
        assert verify_manifest(data_dir / video["manifest"]), video["manifest"]
        assert all((data_dir / shard).is_file() for shard in video["shards"])
    return dataset


def assert_cache_sound(data_dir: Path) -> None:
    """No manifest under shards/ fails its checksums, and no final download is empty."""
    for manifest in (data_dir / "shards").rglob("manifest.json"):
        if not any(part.startswith(".") for part in manifest.relative_to(data_dir).parts):
            assert verify_manifest(manifest), manifest
    for file in (data_dir / "downloads").glob("*"):
        if not file.name.startswith("."):
            assert file.stat().st_size > 0, file
