"""Object storage: the data folder, Prefect's cache and run outputs in an S3-compatible bucket.

Local folders stay the working scratch; with `storage.url` (s3://bucket/prefix) the bucket
holds the durable copy, in the data folder's own layout:

    <url>/shards/<key>/<digest>/     a video's shards, then its manifest.json
    <url>/dataset.json               after every manifest it names
    <url>/.prefect/cache-keys/, results/   the ingest steps' Prefect cache: Cached on another machine
    <url>/runs/<run dir name>/       a training run directory, mirrored after each checkpoint

Every object is written whole (an S3 PUT is atomic) and the object that says a set is
complete goes last, so a reader that finds the marker finds the whole set, with no lock
across machines. Training reads local copies (`stage_dataset`). docs/object-storage.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from prefect.filesystems import RemoteFileSystem

from synthwave.atomic import atomic_open
from synthwave.digest import file_sha256
from synthwave.errors import UserError
from synthwave.settings import StorageSettings
from tasks.shards import MANIFEST, shard_ok

DATASET = "dataset.json"
CHECKPOINT_STATE = "checkpoints/checkpoint"  # TF's list of checkpoints: pushed after them
CONFIG = "config.json"  # a run dir's; pulled last, so its presence means a whole pull


class StorageError(UserError, RuntimeError):
    """The bucket cannot be used or lacks what is asked; one line naming the URL."""


class Bucket:
    """One s3://bucket/prefix; paths given to its methods are relative to the prefix."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url, self.options = url, options

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return fsspec.filesystem("s3", **self.options)  # fsspec keeps one instance per options

    def path(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def block(self, relative: str) -> RemoteFileSystem:
        """A Prefect storage block on `relative`, for Prefect's cache records and results."""
        return RemoteFileSystem(basepath=self.path(relative), settings=self.options)

    def read(self, relative: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(relative))
        except FileNotFoundError:
            return None

    def sizes(self, relative: str) -> dict[str, int]:
        """Size of every object under the folder `relative`, by its path inside it."""
        base = self.path(relative).removeprefix("s3://").rstrip("/") + "/"
        found = self.fs.find(self.path(relative), detail=True)
        return {name.removeprefix(base): info["size"] for name, info in found.items() if name.startswith(base)}

    def put(self, local: Path, relative: str) -> None:
        self.fs.put_file(str(local), self.path(relative))

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    def get(self, relative: str, local: Path, sha256: str | None = None) -> None:
        """Download to a temp name beside `local`, check the sha256 if given, rename."""
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self.fs.get_file(self.path(relative), tmp)
            if sha256 is not None and file_sha256(Path(tmp)) != sha256:
                raise StorageError(f"{self.path(relative)} does not match its manifest's sha256: ingest it again")
            os.replace(tmp, local)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@functools.lru_cache(maxsize=16)
def open_bucket(settings: StorageSettings) -> Bucket:
    """The bucket of `settings`, checked once per process: a wrong bucket, endpoint or
    credentials fail here, in one line naming the URL, before any work is done."""
    if settings.credentials_block:
        _export_credentials(settings)
    bucket = Bucket(settings.url, _options(settings))
    name = settings.url.removeprefix("s3://").split("/")[0]
    where = settings.endpoint_url or "the default endpoint"
    try:
        bucket.fs.ls(name)
    except ImportError:
        raise StorageError(f"storage {settings.url} needs s3fs: pip install 'ai-synthwave[s3]'") from None
    except FileNotFoundError:
        raise StorageError(f"storage {settings.url}: no bucket {name!r} at {where}: create it or fix the URL") from None
    except PermissionError:
        raise StorageError(f"storage {settings.url}: access denied at {where}: check the credentials") from None
    except Exception as exc:  # botocore's connection and client errors have no common base
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"storage {settings.url}: {reason}: check endpoint_url and credentials") from None
    return bucket


def _options(settings: StorageSettings) -> dict[str, Any]:
    """s3fs options, never credentials: those are botocore's to find (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role), which _export_credentials sets
    from a Secret block. So the options can be saved in a Prefect block (results_block).
    No listing cache: other machines change the bucket under a long-lived process.
    Standard retries: 3 attempts, so a wrong endpoint fails in seconds, not legacy's 5."""
    options: dict[str, Any] = {"use_listings_cache": False, "config_kwargs": {"retries": {"mode": "standard"}}}
    if settings.endpoint_url:
        options["endpoint_url"] = settings.endpoint_url
    return options


_CREDENTIALS = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN"}


def _export_credentials(settings: StorageSettings) -> None:
    """Set this process's AWS_* variables from a Prefect Secret block holding a JSON object
    {"key": ..., "secret": ..., "token": ...}: every S3 client of the run, Prefect's reading
    of results and the worker processes it starts included, then finds them."""
    from prefect.blocks.system import Secret

    name = settings.credentials_block
    try:
        value = Secret.load(name).get()
    except ValueError:
        raise StorageError(f"storage {settings.url}: no Prefect Secret block named {name!r}: create it first") from None
    if not isinstance(value, dict) or not {"key", "secret"} <= value.keys():
        raise StorageError(f'storage {settings.url}: Secret block {name!r} must hold {{"key": ..., "secret": ...}}')
    os.environ.pop(_CREDENTIALS["token"], None)  # a token belongs to the keys it came with
    for field, variable in _CREDENTIALS.items():
        if field in value:
            os.environ[variable] = str(value[field])


@functools.lru_cache(maxsize=16)
def results_block(settings: StorageSettings) -> RemoteFileSystem:
    """<url>/.prefect/results as a block saved on the Prefect server, as task result storage
    must be (a process reading a task's result from its state loads the block by id). It
    holds the endpoint only, no credentials."""
    block = open_bucket(settings).block(".prefect/results")
    block.save(f"synthwave-results-{settings.digest()}", overwrite=True)
    return block


def _relative(data_dir: Path, path: Path) -> str:
    return path.resolve().relative_to(data_dir.resolve()).as_posix()


def _safe(relative: str, where: str) -> str:
    """A path read from the bucket must stay inside the local folder it is copied to."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise StorageError(f"{where} names {relative!r}, outside its folder: ingest again into a clean prefix")
    return relative


# Ingest: publish, and the published state of a video's shard folder.


def publish_file(settings: StorageSettings, data_dir: Path, path: Path) -> None:
    """Upload one file of the data folder (dataset.json) to the same path in the bucket."""
    open_bucket(settings).put(path, _relative(data_dir, path))


def publish_shards(settings: StorageSettings, data_dir: Path, folder: Path) -> None:
    """Upload a finished shard folder. The old manifest goes first and the new one last, so
    the bucket never pairs a manifest with shards of another extraction."""
    bucket, relative = open_bucket(settings), _relative(data_dir, folder)
    manifest = json.loads((folder / MANIFEST).read_bytes())
    bucket.delete(f"{relative}/{MANIFEST}")
    for shard in manifest["shards"]:
        bucket.put(folder / shard["file"], f"{relative}/{shard['file']}")
    bucket.put(folder / MANIFEST, f"{relative}/{MANIFEST}")


def pull_manifest(settings: StorageSettings, data_dir: Path, folder: Path) -> bool:
    """True if the shard folder is published whole: its manifest is in the bucket and every
    shard it lists is there at its recorded size. The manifest is then copied to `folder`
    (the flow writes dataset.json from it; the shards stay in the bucket until training
    stages them)."""
    bucket, relative = open_bucket(settings), _relative(data_dir, folder)
    raw = bucket.read(f"{relative}/{MANIFEST}")
    if raw is None:
        return False
    try:
        shards = json.loads(raw)["shards"]
        sizes = bucket.sizes(relative)
        if not shards or any(sizes.get(shard["file"]) != shard["bytes"] for shard in shards):
            return False
    except (ValueError, KeyError, TypeError):
        return False
    _write_if_changed(folder / MANIFEST, raw)
    return True


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.is_file() or path.read_bytes() != data:
        with atomic_open(path) as handle:
            handle.write(data)


# Training: stage the dataset, mirror the run directory.


def stage_dataset(settings: StorageSettings, data_dir: Path, workers: int = 8) -> int:
    """Copy the bucket's dataset.json, and the manifests and shards it names, into `data_dir`.

    A shard already there with its manifest's size and sha256 is kept; every other one is
    downloaded to a temp name, checked against the sha256 and renamed. dataset.json is
    written last, so a local dataset.json means a whole staged set. Returns the number of
    shards downloaded.
    """
    bucket = open_bucket(settings)
    raw = bucket.read(DATASET)
    if raw is None:
        raise StorageError(f"{bucket.path(DATASET)} not found: run ingest with --storage {settings.url} first")
    manifests: dict[str, bytes] = {}
    wanted: list[tuple[str, dict]] = []
    for video in json.loads(raw).get("videos", []):
        relative = _safe(video["manifest"], bucket.path(DATASET))
        manifests[relative] = bucket.read(relative) or b""
        if not manifests[relative]:
            raise StorageError(f"{bucket.path(relative)} not found, but dataset.json lists it: rerun ingest")
        folder = PurePosixPath(relative).parent
        for shard in json.loads(manifests[relative])["shards"]:
            wanted.append((_safe(str(folder / shard["file"]), bucket.path(relative)), shard))

    def stage(item: tuple[str, dict]) -> bool:
        relative, shard = item
        local = data_dir / relative
        if shard_ok(local.parent, shard):
            return False
        bucket.get(relative, local, shard["sha256"])
        return True

    with ThreadPoolExecutor(workers) as pool:  # S3 throughput comes from parallel requests
        downloaded = sum(pool.map(stage, wanted))
    for relative, manifest in manifests.items():
        _write_if_changed(data_dir / relative, manifest)
    _write_if_changed(data_dir / DATASET, raw)
    return downloaded


class RunMirror:
    """A run directory mirrored to <url>/runs/<run dir name>/.

    push() uploads what changed since its last push (by size and mtime; the first push of
    a process uploads everything once), TF's checkpoint list after the checkpoint files,
    and deletes the files it had uploaded that are gone locally (rotated checkpoints).
    pull() copies the remote run into a local run dir that has none (a fresh machine
    resuming); a local run with config.json is at least as new, and is kept.
    """

    def __init__(self, settings: StorageSettings, run_dir: Path) -> None:
        self.bucket, self.root = open_bucket(settings), run_dir
        self.prefix = f"runs/{run_dir.resolve().name}"
        self.sent: dict[str, tuple[int, int]] = {}

    def _local(self) -> dict[str, tuple[int, int]]:
        """Files of the run dir by relative path; dot files (the lock, temp files) excluded."""
        files = {}
        for path in self.root.rglob("*"):
            relative = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                stat = path.stat()
                files[relative.as_posix()] = (stat.st_size, stat.st_mtime_ns)
        return files

    def pull(self) -> int:
        """Download the remote run if the local run dir has no config.json; returns files pulled."""
        if (self.root / CONFIG).exists():
            return 0
        remote = sorted(self.bucket.sizes(self.prefix), key=lambda relative: relative == CONFIG)
        for relative in remote:
            self.bucket.get(f"{self.prefix}/{_safe(relative, self.bucket.path(self.prefix))}", self.root / relative)
        self.sent = self._local()  # what was pulled is in the bucket already
        return len(remote)

    def push(self) -> int:
        """Upload new and changed files, delete rotated ones; returns files uploaded."""
        if not self.root.is_dir():
            return 0
        local = self._local()
        changed = sorted((rel for rel, stamp in local.items() if self.sent.get(rel) != stamp),
                         key=lambda relative: relative == CHECKPOINT_STATE)  # fmt: skip
        for relative in changed:
            self.bucket.put(self.root / relative, f"{self.prefix}/{relative}")
            self.sent[relative] = local[relative]
        for relative in [relative for relative in self.sent if relative not in local]:
            self.bucket.delete(f"{self.prefix}/{relative}")
            del self.sent[relative]
        return len(changed)
