"""The ingest steps as Prefect tasks: retries, per-video caching and locking.

The plain functions live in their own modules and know nothing of Prefect. Here they get:
- a cache key of task name + video key + a digest of the settings that change the output
  (nothing else: a different data_dir path or log level must not miss the cache);
- results and cache records persisted under the data folder, so a rerun or the UI's
  Retry finds them, also after the folder is moved (`forget_stale`); with `storage`, under
  the bucket prefix instead (tasks/storage.py), so another machine finds them too,
  and the shards are published there;
- SERIALIZABLE isolation with a file lock per key, so concurrent runs of one video
  execute it once and the others read the cached result (on one machine: the locks stay
  local files; across machines the cost of no lock is computing a video twice);
- retries with exponential backoff and jitter for transient download errors only.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
from prefect import Task, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.context import TaskRunContext
from prefect.filesystems import RemoteFileSystem
from prefect.tasks import exponential_backoff

from synthwave.settings import DownloadSettings, FrameSettings, StorageSettings
from synthwave.text import slug
from tasks.storage import open_bucket, publish_shards, pull_manifest, results_block
from tasks.locks import ProcessLockManager
from tasks.download import Video, download
from tasks.download_errors import TransientDownloadError
from tasks.playlists import expand_playlist
from tasks.prefect_internals import point_record_at
from tasks.shards import MANIFEST, verify_manifest, write_video_shards
from tasks.sources import Source, short_name


def downloads_dir(data_dir: Path) -> Path:
    return data_dir / "downloads"


def shards_dir(data_dir: Path, video_key: str, frames: FrameSettings, shard_mb: float) -> Path:
    """Where one video's shards go: one folder per (video, output settings)."""
    return data_dir / "shards" / video_key / f"{frames.digest()}-{shard_mb:g}mb"


# Task names, also the first part of each cache key: two steps never share a key.
DOWNLOAD, SHARDS = "download", "extract-shards"


def download_key(source: Source, settings: DownloadSettings) -> str:
    return f"{DOWNLOAD}-{source.key}-{settings.output_digest()}"


def shards_key(video_key: str, frames: FrameSettings, shard_mb: float) -> str:
    return f"{SHARDS}-{video_key}-{frames.digest()}-{shard_mb:g}"


def _download_key(ctx: TaskRunContext, params: dict[str, Any]) -> str:
    return download_key(params["source"], params["settings"])


def _shards_key(ctx: TaskRunContext, params: dict[str, Any]) -> str:
    return shards_key(params["video"].key, params["settings"], params["shard_mb"])


def run_label(name: str, key: str) -> str:
    """`name` slugged, with the key's first digits so that two videos of one title stay apart."""
    label = slug(unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode())  # accents stripped
    return f"{label}-{key.partition('-')[2][:6]}" if label else key


def _download_run_name(parameters: dict[str, Any]) -> str:
    source: Source = parameters["source"]
    if source.kind == "youtube":  # the id is the key: slugging would lower-case it
        return f"download-{source.key}"
    return f"download-{run_label(short_name(source), source.key)}"


def _shards_run_name(parameters: dict[str, Any]) -> str:
    video: Video = parameters["video"]
    return f"shards-{run_label(video.title, video.key)}"


def _is_transient(task_: Task, task_run: Any, state: Any) -> bool:
    return isinstance(state.result(raise_on_failure=False), TransientDownloadError)


@task(
    name=DOWNLOAD,
    task_run_name=_download_run_name,
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_download_key),
    retry_condition_fn=_is_transient,
)
def download_task(source: Source, settings: DownloadSettings, downloads: Path) -> Video:
    return download(source, settings, downloads)


@task(name="expand-playlist", retry_condition_fn=_is_transient)
def playlist_task(url: str, settings: DownloadSettings) -> list[str]:
    """Not cached: a playlist is read afresh on every (scheduled) run."""
    return expand_playlist(url, settings)


@task(
    name=SHARDS,
    task_run_name=_shards_run_name,
    cache_policy=CacheKeyFnPolicy(cache_key_fn=_shards_key),
)
def shards_task(
    video: Video, settings: FrameSettings, shard_mb: float, data_dir: Path, storage: StorageSettings | None = None
) -> str:
    """Write the video's shards (and publish them with `storage`). Returns manifest.json's
    path relative to data_dir: a cached result must not name one machine's folder."""
    out_dir = shards_dir(data_dir, video.key, settings, shard_mb)
    path = video.path
    if not path.is_file() and (moved := downloads_dir(data_dir) / path.name).is_file():
        path = moved  # a cached download names the folder it was made in; the data folder moved
    write_video_shards(path, video.key, settings, shard_mb, out_dir, source=video.source)
    if storage is not None:
        publish_shards(storage, data_dir, out_dir)
    return (out_dir.relative_to(data_dir) / MANIFEST).as_posix()


def shards_ok(data_dir: Path, out_dir: Path, storage: StorageSettings | None) -> bool:
    """Whether a video's shard set is valid where its cache record lives: published whole in
    the bucket (its manifest is then copied here), or else verified on local disk."""
    if storage is not None:
        return pull_manifest(storage, data_dir, out_dir)
    return verify_manifest(out_dir / MANIFEST)


def configure(step: Task, data_dir: Path, storage: StorageSettings | None = None, **options: Any) -> Task:
    """Bind a step's caching, result storage and locks to one data folder (and bucket).

    Results are stored as JSON (a Video, a manifest path), never pickled: the cache is
    data a worker reads back, not code it runs.
    """
    state = data_dir.resolve() / ".prefect"
    if storage is None:
        keys, results = state / "cache-keys", state / "results"
    else:  # checks the bucket first: a bad URL fails here, in one line
        keys, results = open_bucket(storage).block(".prefect/cache-keys"), results_block(storage)
    policy = step.cache_policy.configure(
        key_storage=keys,
        lock_manager=ProcessLockManager(lock_files_directory=state / "locks"),
        isolation_level="SERIALIZABLE",
    )
    return step.with_options(
        cache_policy=policy,
        persist_result=True,
        result_storage=results,
        result_serializer="json",
        **options,
    )


def _record(step: Task, key: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system and path of the step's cache record `key`, local or in the bucket."""
    storage = step.cache_policy.key_storage
    if isinstance(storage, RemoteFileSystem):
        return storage.filesystem, f"{storage.basepath}/{key}"
    return fsspec.filesystem("file"), str(Path(storage) / key)


def has_record(step: Task, key: str) -> bool:
    """Whether the step has a cache record `key`, i.e. will come back Cached."""
    fs, path = _record(step, key)
    return fs.exists(path)


def forget_stale(step: Task, key: str, output_ok: Callable[[], bool]) -> None:
    """Point the step's local cache record at this data folder (the folder may have moved),
    then delete it if its output is missing or fails verification.

    Under the step's lock, and not at all while another run holds it (that run is making
    the output now): the later run then waits for the lock and gets the result `Cached`,
    where a refresh decided before the lock would have computed the same video twice.
    Bucket records name their results relative to a saved block and need no pointing.
    """
    locks, holder = step.cache_policy.lock_manager, f"ingest-check-{uuid.uuid4()}"
    if locks.is_locked(key) or not locks.acquire_lock(key, holder, acquire_timeout=0.01):
        return
    try:
        storage = step.cache_policy.key_storage
        if not isinstance(storage, RemoteFileSystem):
            point_record_at(Path(storage) / key, Path(storage).parent / "results")
        if not output_ok():
            fs, path = _record(step, key)
            if fs.exists(path):
                fs.rm_file(path)
    finally:
        locks.release_lock(key, holder)


def download_retry_options(settings: DownloadSettings) -> dict[str, Any]:
    return {
        "retries": settings.retries,
        "retry_delay_seconds": exponential_backoff(backoff_factor=settings.retry_delay_s),
        "retry_jitter_factor": 0.5,
    }
