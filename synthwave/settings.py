"""One validated settings object for the CLI, the flows and the deployments.

Every model forbids unknown keys, so a typo in prefect.yaml or a CLI flag fails
with the key's name instead of being silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


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


def _parse_no_list(value: object) -> object:
    """Accept "none" (as typed on the command line) for no list; "" stays an empty list."""
    return None if isinstance(value, str) and value.strip().lower() == "none" else value


HostList = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], BeforeValidator(_parse_hosts)]


# Form titles for the names that "Timeout S" or "G Lr" would not explain; the rest are the
# name's words, capitalised, with a unit suffix (_s, _mb) as "(s)", "(MB)".
TITLES = {
    "g_lr": "Generator learning rate", "d_lr": "Discriminator learning rate", "beta_1": "Adam beta 1",
    "beta_2": "Adam beta 2", "g_filters": "Generator filters", "d_filters": "Discriminator filters",
    "ema_decay": "Generator EMA decay", "r1_gamma": "R1 penalty weight", "jpeg_quality": "JPEG quality",
    "max_bytes": "Largest download (bytes)", "min_bytes_per_s": "Slowest average download (bytes/s)",
    "shard_mb": "Shard size (MB)", "ms_ssim": "MS-SSIM", "dask_address": "Dask scheduler address",
    "endpoint_url": "Endpoint URL", "url": "URL", "artifact_base_url": "Artifact base URL",
    "data_dir": "Data directory", "run_dir": "Run directory", "max_height": "Highest video (px)",
    "latent_dim": "Latent size", "lr_decay": "Learning-rate decay", "jit_compile": "XLA (jit_compile)",
    "fps": "Frames per second", "minibatch_std": "Minibatch stddev", "out": "Output file",
}
UNITS = {"s": "s", "mb": "MB"}


def field_title(name: str, _info: object = None) -> str:
    """The title a settings form shows for field `name`."""
    if name in TITLES:
        return TITLES[name]
    *words, last = name.split("_")
    if words and last in UNITS:
        return f"{' '.join(words).capitalize()} ({UNITS[last]})"
    return name.replace("_", " ").capitalize()


class SettingsModel(BaseModel):
    """Base of every settings model: frozen, unknown keys refused by name, form titles in words."""

    model_config = ConfigDict(extra="forbid", frozen=True, field_title_generator=field_title)

    def digest(self) -> str:
        """Stable short hash of the values: part of cache keys and output paths."""
        return _digest(self.model_dump(mode="json"))


def _digest(values: dict) -> str:
    blob = json.dumps(values, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class DownloadSettings(SettingsModel):
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
    allowed_hosts: Annotated[HostList | None, BeforeValidator(_parse_no_list)] = Field(
        None,
        description=(
            "Hosts a direct URL may fetch from, comma-separated (name, .suffix, IP or CIDR); "
            "none: any public host. YouTube is always allowed; private, loopback and "
            "link-local addresses only when listed"
        ),
    )

    min_bytes_per_s: float = Field(
        10_000, ge=0, description="Give up on a download averaging less (bytes/s) after its first timeout_s; 0: none"
    )
    deadline_s: Annotated[float | None, BeforeValidator(_parse_none)] = Field(
        None, gt=0, description="Give up on a whole download after this; none: timeout_s + max_bytes / min_bytes_per_s"
    )

    def download_deadline_s(self) -> float | None:
        """Seconds one whole download may take: deadline_s, or what max_bytes takes at the
        minimum rate (None: no deadline, with neither)."""
        if self.deadline_s is not None or not self.min_bytes_per_s:
            return self.deadline_s
        return self.timeout_s + self.max_bytes / self.min_bytes_per_s

    def output_digest(self) -> str:
        """Only what changes the downloaded bytes belongs in the cache key."""
        return hashlib.sha256(f"h{self.max_height}".encode()).hexdigest()[:12]


_BUCKET = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[^\s]*)?")


class StorageSettings(SettingsModel):
    """An S3-compatible bucket prefix for the data folder, Prefect's cache and run outputs
    (tasks/storage.py). Credentials never go here: they come from the environment or
    from a Prefect Secret block named here."""

    url: str = Field(description="s3://bucket/prefix that shards, dataset.json, the cache and runs go to")
    endpoint_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="S3-compatible endpoint (MinIO, Ceph, R2); none: AWS, or AWS_ENDPOINT_URL if set",
    )
    credentials_block: str | None = Field(
        None,
        min_length=1,
        description='Prefect Secret block holding {"key": ..., "secret": ...}; none: AWS_ACCESS_KEY_ID etc. or a role',
    )

    @field_validator("url")
    @classmethod
    def _s3_url(cls, url: str) -> str:
        if not _BUCKET.fullmatch(url.strip()):
            raise ValueError(f"storage url {url!r} is not s3://bucket/prefix (bucket: 3-63 of a-z 0-9 . -)")
        return url.strip().rstrip("/")


def _parse_storage(value: object) -> object:
    """Accept "s3://bucket/prefix" (the CLI's --storage) for {url: ...}; "none": no storage."""
    value = _parse_none(value)
    return {"url": value} if isinstance(value, str) else value


Storage = Annotated[StorageSettings | None, BeforeValidator(_parse_storage)]


class FrameSettings(SettingsModel):
    every: int | None = Field(240, gt=0, description="Keep every Nth frame (the article: 240)")
    every_seconds: float | None = Field(None, gt=0, description="Keep one frame every T seconds instead")
    start_s: float = Field(0.0, ge=0, description="Skip the video before this time")
    end_s: float | None = Field(None, gt=0, description="Stop at this time")
    max_frames: int | None = Field(None, gt=0, description="Keep at most this many frames per video")
    downsample: float = Field(
        2.0,
        ge=1,
        description="When size is none (as when downsample is given without size): divide each video's height and "
        "width by this, so videos of different sizes give frames of different sizes",
    )
    size: Annotated[ImageSize | None, BeforeValidator(_parse_none)] = Field(
        (180, 320),
        description="Every frame's HxW (the article's: 360p halved), centre-cropped to its aspect first, whatever "
        "each video's size; none: each video's own size divided by downsample",
    )
    crop_aspect: Aspect | None = Field(
        None, description="Centre-crop to this W:H aspect before resizing; none: to size's aspect (no crop without size)"
    )
    image_format: Literal["png", "jpeg"] = Field("png", description="png: lossless; jpeg: ~4x smaller shards")
    jpeg_quality: int = Field(95, ge=1, le=100, description="Quality of jpeg frames (1-100)")
    # Curation (tasks/curate.py, docs/curation.md): on by default; off gives the article's raw sampling.
    dedupe: bool = Field(True, description="Drop near-duplicates of any frame already kept from the same video")
    dedupe_distance: int = Field(
        10, ge=0, le=64, description="Most of the 64 bits a near-duplicate's DCT hash may differ in (docs/curation.md)"
    )
    colour_distance: float = Field(
        10.0, ge=0, description="Most a near-duplicate's cells may differ in chroma, in 0-255 levels (docs/curation.md)"
    )
    drop_blank: bool = Field(True, description="Drop blank frames: black, white or one flat colour")
    blank_std: float = Field(
        5.0, ge=0, description="Blank: every channel of the 32x48 thumbnail has a standard deviation below this (0-255)"
    )

    @model_validator(mode="before")
    @classmethod
    def _downsample_without_size(cls, data: Any) -> Any:
        # A downsample given alone means what it says: the default size would override it.
        if isinstance(data, dict) and "downsample" in data and "size" not in data:
            return {**data, "size": None}
        return data

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

    @property
    def aspect(self) -> float | None:
        """The W:H frames are centre-cropped to: crop_aspect, else size's, so a size never stretches."""
        if self.crop_aspect is not None or self.size is None:
            return self.crop_aspect
        return self.size[1] / self.size[0]

    def digest(self) -> str:
        # The crop as applied: frames of a size once stretched to it must not pass for cropped ones.
        return _digest({**self.model_dump(mode="json"), "crop_aspect": self.aspect})


class IngestSettings(SettingsModel):
    data_dir: Path = Field(
        Path("data"), description="Downloads, shards, manifests and dataset.json live here; a relative path is "
        "relative to the flow run's working directory (on the deployments' workers: the checkout)",
    )
    download: DownloadSettings = Field(DownloadSettings(), description="How each video is fetched")
    frames: FrameSettings = Field(FrameSettings(), description="Which frames are kept, and at what size")
    shard_mb: float = Field(100.0, gt=0, allow_inf_nan=False, description="Target size of one TFRecord shard")
    task_runner: Literal["threads", "dask"] = Field(
        "threads", description="Where videos are processed: a thread pool here, or Dask worker processes"
    )
    workers: int = Field(4, gt=0, description="Threads, or the processes of a temporary local Dask cluster")
    dask_address: str | None = Field(
        None,
        pattern=r"^([a-z]+://)?[^\s/]+:\d+$",
        description="Scheduler of a running Dask cluster (tcp://host:8786); none: a local cluster of `workers`",
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> IngestSettings:
        if self.dask_address is not None and self.task_runner != "dask":
            raise ValueError("dask_address is only used with task_runner dask: set task_runner to dask")
        return self

    storage: Storage = Field(
        None, description="s3://bucket/prefix to publish shards, dataset.json and the cache to; none: local only"
    )


class ModelSettings(SettingsModel):
    """What a checkpoint's variables depend on: saved as the run's config.json, which rebuilds the
    model (`synthwave generate`, `walk`), and a resume with other values is refused."""

    latent_dim: int = Field(100, gt=0, description="Length of the noise vector the generator draws from")
    g_filters: int = Field(256, gt=0, description="Channels of the generator's first block")
    d_filters: int = Field(64, gt=0, description="Channels of the discriminator's first block")
    max_blocks: int = Field(4, ge=1, le=6, description="Most up/down-sampling blocks")
    ema_decay: Annotated[float | None, BeforeValidator(_parse_none)] = Field(
        0.99, gt=0, lt=1, description="EMA of generator weights for samples, SWD and walks; none: off"
    )
    # More of the recipe, off: none beat the defaults in benchmarks/quality.py (docs/quality.md).
    spectral_norm: bool = Field(False, description="Spectral normalisation of D's conv and dense kernels")
    minibatch_std: bool = Field(
        False, description="D sees the batch's feature spread (ProGAN's minibatch stddev), so look-alike samples stand out"
    )
    augment: str = Field(
        "", description="DiffAugment policies for D's inputs, comma-separated: color,translation,cutout; '': none"
    )

    @field_validator("augment")
    @classmethod
    def _policies(cls, augment: str) -> str:
        names = [name.strip() for name in augment.split(",") if name.strip()]
        unknown = sorted(set(names) - {"color", "translation", "cutout"})
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"augment {augment!r}: give distinct policies from color,translation,cutout, or ''")
        return ",".join(names)


class OptimisationSettings(SettingsModel):
    """How each step updates the two nets: losses, optimisers, regularisation."""

    # Defaults: the article's learning rates in the recipe benchmarks/quality.py chose (Dropout 0.3,
    # label smoothing 0.1, decaying lrs, EMA 0.99); its figures and the rejected ones: docs/quality.md.
    loss: Literal["bce", "hinge"] = Field("bce", description="bce: the article's; hinge: as in SN-GAN/BigGAN")
    g_lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="Generator's Adam lr (the article's)")
    d_lr: float = Field(
        1e-4,
        gt=0,
        allow_inf_nan=False,
        description="Discriminator's Adam lr (the article's; TTUR, Heusel et al. 2017, puts d_lr > g_lr)"
    )
    beta_1: float = Field(0.5, ge=0, lt=1, description="Adam's first-moment decay (DCGAN's 0.5)")
    beta_2: float = Field(0.999, ge=0, lt=1, description="Adam's second-moment decay")
    lr_decay: float = Field(
        1.0, ge=0, le=1, description="Last fraction of the steps over which both lrs fall linearly to 0; 0: constant"
    )
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout after each of D's blocks (the article's: 0.5)")
    label_smoothing: float = Field(
        0.1, ge=0, lt=0.5, description="Real targets become 1 - this (loss bce; 0 by default with hinge)"
    )
    r1_gamma: float = Field(
        0.0, ge=0, allow_inf_nan=False, description="Weight of the R1 penalty on D's gradient at real images; 0: off"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_default_smoothing_with_hinge(cls, data: Any) -> Any:
        # The default smoothing is of BCE's real targets; hinge has no targets to smooth.
        if isinstance(data, dict) and data.get("loss") == "hinge":
            return {"label_smoothing": 0.0, **data}
        return data

    @model_validator(mode="after")
    def _smoothing_needs_bce(self) -> OptimisationSettings:
        if self.loss == "hinge" and self.label_smoothing:
            raise ValueError("label_smoothing applies to loss bce only: set it to 0 with loss hinge")
        return self


class ScheduleSettings(SettingsModel):
    """How long the run trains, on what batches, and when it writes grids and checkpoints."""

    steps: int = Field(2000, gt=0, description="Total optimiser steps, including resumed ones")
    batch_size: int = Field(64, gt=0, description="Real images per step (the global batch over all devices)")
    shuffle_buffer: int = Field(2048, gt=0, description="Frames the reader shuffles among (more: better mixed)")
    sample_every: int = Field(100, gt=0, description="Steps between image grids")
    checkpoint_every: int = Field(200, gt=0, description="Steps between checkpoints")


class EvaluationSettings(SettingsModel):
    """SWD and MS-SSIM of samples against held-out frames, during training."""

    eval_every: int = Field(500, ge=0, description="Steps between SWD/MS-SSIM evaluations on held-out frames; 0: off")
    eval_frames: int = Field(256, ge=16, description="Most held-out frames (and generated images) per evaluation")


class OutputSettings(SettingsModel):
    """What the run directory keeps and shows besides the checkpoints' schedule."""

    keep_checkpoints: int = Field(3, gt=0, description="Newest checkpoints kept; older ones are deleted")
    grid_size: int = Field(16, gt=0, description="Images in a grid (a square number reads best)")
    walk_seconds: float = Field(
        4.0, ge=0, description="Seconds of latent walk (walk.mp4, at the image size) after training; 0: none"
    )
    artifact_base_url: str | None = Field(
        None, description="URL the browser reaches run_dir at (e.g. a static server or bucket)"
    )


class RuntimeSettings(SettingsModel):
    """Where and how the step computes and the frames are kept: speed, not what is learnt
    (up to float rounding)."""

    # The default comes from SYNTHWAVE_MIXED_PRECISION when set, so one variable runs a whole test
    # suite (or a worker) in float32 or bfloat16 whatever the CPU would pick (.ci/run does both).
    mixed_precision: Literal["auto", "on", "off"] = Field(
        default_factory=lambda: os.environ.get("SYNTHWAVE_MIXED_PRECISION", "auto"), validate_default=True,
        description="auto: float16 on a GPU, bfloat16 on a CPU with native bfloat16; "
        "the default is $SYNTHWAVE_MIXED_PRECISION when set",
    )
    jit_compile: Literal["auto", "on", "off"] = Field("auto", description="auto: XLA on GPU only")
    steps_per_call: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Steps run by one call into TensorFlow, syncing with Python once per call "
        "(Keras' steps_per_execution); auto: 1 on CPU, 16 on a GPU"
    )
    devices: Literal["auto", "one", "all"] = Field(
        "auto", description="auto: every GPU when there are several (batch_size is the global batch); "
        "one: a single device; all: every GPU, or every logical CPU without one"
    )
    cache_frames: Literal["auto", "memory", "off"] = Field(
        "auto", description="memory: decode each training frame once and serve later epochs from RAM; off: decode "
        "them every epoch; auto: memory when the decoded frames fit in cache_memory_share"
    )
    cache_memory_share: float = Field(
        0.25, gt=0, le=0.9, description="Share of the machine's (or container's) memory cache_frames auto may fill"
    )


# TrainSettings' groups: each field's flat name (the CLI flag, a flat prefect.yaml key) is unique.
TRAIN_GROUPS: dict[str, type[SettingsModel]] = {
    "model": ModelSettings, "optimisation": OptimisationSettings, "schedule": ScheduleSettings,
    "evaluation": EvaluationSettings, "outputs": OutputSettings, "runtime": RuntimeSettings,
}  # fmt: skip
_GROUP_OF = {name: group for group, model in TRAIN_GROUPS.items() for name in model.model_fields}


def _flat_keys_schema(schema: dict[str, Any]) -> None:
    """The JSON schema (Prefect's form and its server-side check) also accepts each field's flat name
    at the top level, as `_into_groups` does; unknown keys still fail."""
    schema["patternProperties"] = {f"^({'|'.join(sorted(_GROUP_OF))})$": {}}


class TrainSettings(SettingsModel):
    """A training run: where its data and run directory are, its seed, and its settings in groups.

    Each group's fields may also be given flat (`steps: 5000`, as the CLI flags and earlier
    prefect.yaml files give them): they are moved into their group before validation.
    """

    model_config = ConfigDict(json_schema_extra=_flat_keys_schema)

    data_dir: Path = Field(
        Path("data"), description="Where ingest wrote dataset.json; a relative path is relative to the flow "
        "run's working directory (on the deployments' workers: the checkout)",
    )
    run_dir: Path = Field(
        Path("runs/default"), description="Checkpoints, grids, history; rerun to resume. Relative as data_dir"
    )
    seed: int = Field(0, description="Seeds weights, noise, dropout and shuffling: a seed repeats a run")
    storage: Storage = Field(
        None, description="s3://bucket/prefix to stage dataset.json's shards from and mirror runs/<run dir name> to"
    )
    model: ModelSettings = Field(ModelSettings(), description="The networks; a resumed run must keep them")
    optimisation: OptimisationSettings = Field(OptimisationSettings(), description="Losses, optimisers, regularisation")
    schedule: ScheduleSettings = Field(ScheduleSettings(), description="Steps, batches, grids and checkpoints")
    evaluation: EvaluationSettings = Field(EvaluationSettings(), description="SWD and MS-SSIM against held-out frames")
    outputs: OutputSettings = Field(OutputSettings(), description="Checkpoints kept, grids, the latent walk, links")
    runtime: RuntimeSettings = Field(
        default_factory=RuntimeSettings, description="Precision, XLA, devices, steps per call, the frame cache"
    )

    @model_validator(mode="before")
    @classmethod
    def _into_groups(cls, data: Any) -> Any:
        """Flat keys (`steps`) into their group (`schedule.steps`); a key given both ways is refused."""
        if not isinstance(data, dict) or not any(key in _GROUP_OF for key in data):
            return data
        data = dict(data)
        for key in [key for key in data if key in _GROUP_OF]:
            group = _GROUP_OF[key]
            given = data.get(group) or {}
            given = given.model_dump(exclude_unset=True) if isinstance(given, BaseModel) else dict(given)
            if key in given:
                raise ValueError(f"{key} is given twice, flat and in {group}: give it once")
            data[group] = {**given, key: data.pop(key)}
        return data

    def flat(self) -> dict[str, Any]:
        """Every field by its flat name, the layout before the groups (JSON values)."""
        values = self.model_dump(mode="json")
        return {**{k: v for k, v in values.items() if k not in TRAIN_GROUPS},
                **{k: v for group in TRAIN_GROUPS for k, v in values[group].items()}}  # fmt: skip

    def digest(self) -> str:
        """As SettingsModel's, of the flat layout: a run's digest did not change with the groups."""
        return hashlib.sha256(json.dumps(self.flat(), sort_keys=True).encode()).hexdigest()[:12]

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> TrainSettings:
        """pydantic's copy; with flat names in `update` (`steps`), `updated`'s validated copy instead."""
        if update and any(key in _GROUP_OF for key in update):
            return self.updated(**update)
        return super().model_copy(update=update, deep=deep)

    def updated(self, **changes: Any) -> TrainSettings:
        """A copy with `changes` (flat names or groups), validated as a new one would be."""
        values = self.model_dump(exclude_unset=True)
        for key, value in changes.items():
            if key in _GROUP_OF:
                group = _GROUP_OF[key]
                values[group] = {**values.get(group, {}), key: value}
            else:
                values[key] = value
        return TrainSettings.model_validate(values)


class WalkSettings(SettingsModel):
    run_dir: Path = Field(description="A training run directory (its latest checkpoint is used)")
    out: Path = Field(Path("walk.mp4"), description="MP4 file to write")
    seconds: float = Field(10.0, gt=0, description="Length of the video")
    fps: int = Field(30, gt=0, le=240, description="Frames per second")
    size: ImageSize = Field((360, 640), description="Frame size HxW, both even (MPEG-4)")
    seed: int = Field(0, description="Seed of the latent points the walk passes through")
    segment_seconds: float = Field(3.0, gt=0, description="Seconds from one latent point to the next")
    batch_size: int = Field(32, gt=0, description="Frames generated per generator call")

    @field_validator("out")
    @classmethod
    def _mp4(cls, out: Path) -> Path:
        if out.suffix.lower() != ".mp4":
            raise ValueError(f"{out} is not an .mp4 file: give a path ending in .mp4")
        return out

    @field_validator("size")
    @classmethod
    def _even(cls, size: tuple[int, int]) -> tuple[int, int]:
        # The MPEG-4 encoder silently drops an odd last row or column.
        if size[0] % 2 or size[1] % 2:
            raise ValueError(f"size {size[0]}x{size[1]} has an odd side: MP4 needs even sides, e.g. 360x640")
        return size

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.fps))
