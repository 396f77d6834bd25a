"""One validated settings object for the CLI, the flows and the deployments.

Every model forbids unknown keys, so a typo in prefect.yaml or a CLI flag fails
with the key's name instead of being silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _parse_size(value: object) -> object:
    """Accept "180x320" as well as [180, 320]."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
        if not match:
            raise ValueError(f"size {value!r} is not HxW, e.g. 180x320")
        return (int(match.group(1)), int(match.group(2)))
    return value


def _parse_aspect(value: object) -> object:
    """Accept "16:9" as well as 1.777."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*", value)
        if not match or float(match.group(2)) == 0:
            raise ValueError(f"aspect {value!r} is not W:H, e.g. 16:9")
        return float(match.group(1)) / float(match.group(2))
    return value


ImageSize = Annotated[
    tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]],
    BeforeValidator(_parse_size),
]
Aspect = Annotated[float, Field(gt=0), BeforeValidator(_parse_aspect)]


def _parse_none(value: object) -> object:
    """Accept "none" (as typed on the command line) for no limit."""
    return None if isinstance(value, str) and value.strip().lower() in ("none", "") else value


def _parse_hosts(value: object) -> object:
    """Accept "a.org,10.0.0.0/8" as well as ["a.org", "10.0.0.0/8"]; names are lower-cased."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return tuple(str(part).strip().lower() for part in value)
    return value


HostList = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_parse_hosts)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def digest(self) -> str:
        """Stable short hash of the values: part of cache keys and output paths."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class DownloadSettings(Strict):
    downloader: Literal["yt-dlp", "pytube"] = Field(
        "yt-dlp", description="YouTube backend; yt-dlp keeps up with YouTube, pytube is the pytubefix API"
    )
    max_height: int = Field(360, gt=0, description="Take the best stream at or under this height")
    timeout_s: float = Field(30.0, gt=0, description="Connect/read timeout of one HTTP request")
    max_bytes: int = Field(2 * 1024**3, gt=0, description="Refuse a download larger than this")
    retries: int = Field(4, ge=0, description="Retries of transient failures (5xx, 429, connection)")
    retry_delay_s: float = Field(2.0, ge=0, description="Base of the exponential backoff")
    max_duration_s: Annotated[float | None, BeforeValidator(_parse_none)] = Field(
        6 * 3600.0, gt=0, description="Refuse a video longer than this (seconds; none: no limit)"
    )
    allowed_hosts: HostList | None = Field(
        None,
        description=(
            "Hosts a direct URL may fetch from, comma-separated (name, .suffix, IP or CIDR); "
            "none: any public host. YouTube is always allowed; private, loopback and "
            "link-local addresses only when listed"
        ),
    )

    def output_digest(self) -> str:
        """Only what changes the downloaded bytes belongs in the cache key."""
        return hashlib.sha256(f"h{self.max_height}".encode()).hexdigest()[:12]


class FrameSettings(Strict):
    every: int | None = Field(240, gt=0, description="Keep every Nth frame (the article: 240)")
    every_seconds: float | None = Field(None, gt=0, description="Keep one frame every T seconds instead")
    start_s: float = Field(0.0, ge=0, description="Skip the video before this time")
    end_s: float | None = Field(None, gt=0, description="Stop at this time")
    max_frames: int | None = Field(None, gt=0, description="Keep at most this many frames per video")
    downsample: float = Field(2.0, ge=1, description="Divide height and width by this factor")
    size: ImageSize | None = Field(None, description="Resize to exactly HxW instead of downsampling")
    crop_aspect: Aspect | None = Field(None, description="Centre-crop to this W:H aspect first")
    image_format: Literal["png", "jpeg"] = "png"
    jpeg_quality: int = Field(95, ge=1, le=100)

    @model_validator(mode="after")
    def _one_stride(self) -> FrameSettings:
        if self.every_seconds is not None and self.every is not None and "every" in self.model_fields_set:
            raise ValueError("give either every or every_seconds, not both")
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self

    @property
    def stride_frames(self) -> int | None:
        """Frame stride, or None when the stride is in seconds."""
        return None if self.every_seconds is not None else self.every


class IngestSettings(Strict):
    data_dir: Path = Field(Path("data"), description="Downloads, shards and manifests live here")
    download: DownloadSettings = DownloadSettings()
    frames: FrameSettings = FrameSettings()
    shard_mb: float = Field(100.0, gt=0, description="Target size of one TFRecord shard")


class TrainSettings(Strict):
    data_dir: Path = Field(Path("data"), description="Where ingest wrote dataset.json")
    run_dir: Path = Field(Path("runs/default"), description="Checkpoints, grids, history; rerun to resume")
    steps: int = Field(2000, gt=0, description="Total optimiser steps, including resumed ones")
    batch_size: int = Field(64, gt=0)
    latent_dim: int = Field(100, gt=0)
    g_filters: int = Field(256, gt=0, description="Channels of the generator's first block")
    d_filters: int = Field(64, gt=0, description="Channels of the discriminator's first block")
    max_blocks: int = Field(4, ge=1, le=6, description="Most up/down-sampling blocks")
    dropout: float = Field(0.3, ge=0, lt=1)
    g_lr: float = Field(2e-4, gt=0)
    d_lr: float = Field(2e-4, gt=0)
    beta_1: float = Field(0.5, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Real targets become 1 - this")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of generator weights for samples")
    seed: int = 0
    shuffle_buffer: int = Field(2048, gt=0)
    sample_every: int = Field(100, gt=0, description="Steps between image grids")
    checkpoint_every: int = Field(200, gt=0, description="Steps between checkpoints")
    keep_checkpoints: int = Field(3, gt=0)
    grid_size: int = Field(16, gt=0, description="Images in a grid (a square number reads best)")
    mixed_precision: Literal["auto", "on", "off"] = Field("auto", description="auto: float16 on a GPU, bfloat16 on a CPU with native bfloat16")
    jit_compile: Literal["auto", "on", "off"] = Field("auto", description="auto: XLA on GPU only")
    artifact_base_url: str | None = Field(
        None, description="URL the browser reaches run_dir at (e.g. a static server or bucket)"
    )

    def model_settings(self) -> dict:
        """Settings a checkpoint depends on: a run dir written with others is refused."""
        keys = ("latent_dim", "g_filters", "d_filters", "max_blocks", "ema_decay")
        return {key: getattr(self, key) for key in keys}
