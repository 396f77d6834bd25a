"""The ingest flow: sources -> downloads -> frames -> TFRecord shards + dataset manifest.

Wiring only. Each source becomes a download task and a shards task; they run
concurrently, a failing source never stops the others, and the flow run ends Failed
(naming each failed source) so the UI's Retry re-runs it: what succeeded comes back
Cached, only what failed runs again.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from synthwave.atomic import write_json
from synthwave.errors import UserError
from synthwave.settings import IngestSettings
from synthwave.storage import publish_file
from tasks.curate import repeats
from tasks.download import DownloadError, is_complete
from tasks.playlists import playlist_id
from tasks.shards import CURATION_COUNTS, load_manifest
from tasks.sources import InvalidSourceError, Source, parse_source
from tasks.steps import (
    configure,
    download_retry_options,
    download_task,
    downloads_dir,
    forget_stale,
    has_record,
    playlist_task,
    shards_dir,
    shards_ok,
    shards_task,
)


class IngestFailed(UserError, RuntimeError):
    """Some sources failed; the message names each one."""


@dataclass
class Outcome:
    source: str
    key: str = ""
    title: str = ""
    manifest: Path | None = None
    error: str = ""


def _submit(source: Source, settings: IngestSettings, runner: TaskRunner) -> tuple[PrefectFuture, PrefectFuture]:
    """Submit one video's download and shards; a step whose output is missing or fails
    verification is recomputed instead of being served from the cache. A download whose
    file is gone stays cached while the video's shards will come back Cached: they never
    need the video again (a deleted download, or another machine on the same bucket)."""
    data_dir, storage = settings.data_dir, settings.storage
    out_dir = shards_dir(data_dir, source.key, settings.frames, settings.shard_mb)
    shards = configure(shards_task, data_dir, storage)
    frames = {"settings": settings.frames, "shard_mb": settings.shard_mb}
    shards_key = {"video": SimpleNamespace(key=source.key), **frames}
    forget_stale(shards, shards_key, lambda: shards_ok(data_dir, out_dir, storage))
    download = configure(download_task, data_dir, storage, **download_retry_options(settings.download))
    params = {"source": source, "settings": settings.download}
    forget_stale(
        download, params, lambda: is_complete(source, downloads_dir(data_dir)) or has_record(shards, shards_key)
    )
    video = runner.submit(download, {**params, "downloads": downloads_dir(data_dir)})
    return runner.submit(shards, {**frames, "video": video, "data_dir": data_dir, "storage": storage}), video


def _error(state: State) -> str:
    result = state.result(raise_on_failure=False)
    if isinstance(result, OSError) and (result.errno == errno.ENOSPC or "[Errno 28]" in str(result)):
        return f"{result}: free space under the data folder and rerun (finished videos are kept)"
    return str(result) if isinstance(result, BaseException) else state.message or state.name


# Tasks go to the runner the settings choose (_task_runner), not to the decorator's default.
@flow(name="ingest", log_prints=True)
def ingest(sources: list[str], settings: IngestSettings = IngestSettings()) -> str:
    """Turn videos (YouTube URLs, http(s) URLs, local files) into sharded TFRecords.

    Returns the path of dataset.json, which lists every shard for training.
    """
    logger = get_run_logger()
    if not sources:
        raise ValueError("no sources given: pass YouTube URLs, http(s) URLs or local video files")

    outcomes = _expand_playlists(sources, settings)
    with _task_runner(settings) as runner:
        pending: dict[PrefectFuture, tuple[str, PrefectFuture]] = {}
        for text, outcome in outcomes.items():
            if outcome.error:  # a playlist that could not be listed
                continue
            try:
                source = parse_source(text)
            except InvalidSourceError as exc:
                outcome.error = str(exc)
                continue
            outcome.key = source.key
            shards, video = _submit(source, settings, runner)
            pending[shards] = (text, video)

        progress = create_progress_artifact(0.0, description="Videos ingested")
        done = len(outcomes) - len(pending)
        for shards in as_completed(list(pending)):
            text, video = pending[shards]
            outcome = outcomes[text]
            video.wait(), shards.wait()  # as_completed can yield before the final state is recorded
            downloaded, extracted = video.state, shards.state
            if downloaded.is_completed():
                outcome.title = downloaded.result().title
            if extracted.is_completed():
                outcome.manifest = settings.data_dir / extracted.result()  # relative to data_dir
            else:  # the download's error when it failed, else the extraction's
                outcome.error = _error(extracted if downloaded.is_completed() else downloaded)
                logger.error("%s failed: %s", text, outcome.error)
            done += 1
            update_progress_artifact(progress, 100.0 * done / len(outcomes))

    dataset = _write_dataset(settings, list(outcomes.values()))
    if settings.storage is not None:  # after every manifest it names (published by their tasks)
        publish_file(settings.storage, settings.data_dir, dataset)
    _report(list(outcomes.values()))
    failed = [o for o in outcomes.values() if o.error]
    if failed:
        lines = "; ".join(f"{o.source}: {o.error}" for o in failed)
        raise IngestFailed(f"{len(failed)} of {len(outcomes)} sources failed: {lines}")
    logger.info("dataset: %s", dataset)
    return str(dataset)


@contextmanager
def _task_runner(settings: IngestSettings) -> Iterator[TaskRunner]:
    """The task runner the settings choose, started for this flow run.

    A flow's own runner is fixed by its decorator, but a deployment run takes its settings
    from parameters (the UI's form, its Retry), so the flow submits to this one instead.
    """
    if settings.task_runner == "threads":
        with ThreadPoolTaskRunner(max_workers=settings.workers) as runner:
            yield runner
        return
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise UserError("task_runner dask needs the dask extra: pip install 'ai-synthwave[dask]'") from exc
    if settings.dask_address:
        runner = DaskTaskRunner(address=settings.dask_address)
    else:  # one task at a time per process: a video's decode and encode already use its cores
        cluster = {"n_workers": settings.workers, "threads_per_worker": 1, "processes": True}
        runner = DaskTaskRunner(cluster_kwargs={**cluster, "host": "127.0.0.1", "dashboard_address": None})
    # Task runs in worker processes report to this run's API, named explicitly: without
    # PREFECT_API_URL (an ephemeral server) each worker would start a server of its own.
    with temporary_settings({PREFECT_API_URL: str(FlowRunContext.get().client.api_url)}), runner:
        yield runner


def _expand_playlists(sources: list[str], settings: IngestSettings) -> dict[str, Outcome]:
    """One outcome per video: a playlist URL stands for its videos (or for its own error)."""
    outcomes: dict[str, Outcome] = {}
    expand = playlist_task.with_options(**download_retry_options(settings.download))
    for text in dict.fromkeys(sources):
        if playlist_id(text) is None:
            outcomes.setdefault(text, Outcome(text))
            continue
        try:
            videos = expand(text, settings.download)
        except DownloadError as exc:
            outcomes[text] = Outcome(text, error=str(exc))
            continue
        for url in videos:
            outcomes.setdefault(url, Outcome(url))
    return outcomes


_WHERE_IT_RAN = {"data_dir", "task_runner", "workers", "dask_address", "storage"}


def _write_dataset(settings: IngestSettings, outcomes: list[Outcome]) -> Path:
    """dataset.json: the shards of every source that succeeded, paths relative to data_dir,
    and the rule that holds frames out for evaluation (part of the dataset, not of a run)."""
    from gan.index import Holdout  # no TensorFlow: gan/index.py reads JSON only

    data_dir = settings.data_dir.resolve()
    videos, hashes = [], []
    for outcome in outcomes:
        if outcome.manifest is None:
            continue
        manifest = load_manifest(outcome.manifest)
        hashes.append((manifest["video_key"], manifest.get("hashes", [])))
        folder = outcome.manifest.resolve().parent.relative_to(data_dir)
        videos.append(
            {
                "key": manifest["video_key"],
                "source": outcome.source,
                "title": outcome.title,
                "frames": manifest["frames"],
                **{key: manifest[key] for key in CURATION_COUNTS},
                "shape": [manifest["height"], manifest["width"], manifest["channels"]],
                "manifest": str(folder / "manifest.json"),
                "shards": [str(folder / shard["file"]) for shard in manifest["shards"]],
            }
        )
    # Frames another video already put in the dataset (a re-upload, another encode): the reader skips them.
    excluded = repeats(hashes, settings.frames.dedupe_distance) if settings.frames.dedupe else {}
    for video in videos:
        video["repeated"] = len(excluded.get(video["key"], []))
        video["frames"] -= video["repeated"]
    shapes = {tuple(video["shape"]) for video in videos}
    path = data_dir / "dataset.json"
    write_json(
        path,
        {
            "version": 1,
            "frames": sum(video["frames"] for video in videos),
            **{key: sum(video[key] for video in videos) for key in (*CURATION_COUNTS, "repeated")},
            "shape": list(shapes.pop()) if len(shapes) == 1 else None,
            # What made the frames, not where the run happened: the same dataset from threads or Dask.
            "settings": settings.model_dump(mode="json", exclude=_WHERE_IT_RAN),
            "holdout": Holdout().to_json(),
            "excluded": excluded,
            "videos": videos,
            "failed": [{"source": o.source, "error": o.error} for o in outcomes if o.error],
        },
    )
    return path


def _report(outcomes: list[Outcome]) -> None:
    rows = []
    for outcome in outcomes:
        manifest = load_manifest(outcome.manifest) if outcome.manifest else {}
        rows.append(
            {
                "source": outcome.source,
                "key": outcome.key,
                "title": outcome.title,
                "frames": manifest.get("frames", 0),
                **{key: manifest.get(key, 0) for key in CURATION_COUNTS},
                "shards": len(manifest.get("shards", [])),
                "status": "failed" if outcome.error else "ok",
                "error": outcome.error,
            }
        )
    create_table_artifact(rows, key="ingest-sources", description="Sources of the last ingest run")
