"""The ingest flow: sources -> downloads -> frames -> TFRecord shards + dataset manifest.

Wiring only. Each source becomes a download task and a shards task; they run
concurrently, a failing source never stops the others, and the flow run ends Failed
(naming each failed source) so the UI's Retry re-runs it: what succeeded comes back
Cached, only what failed runs again.
"""

from __future__ import annotations

import errno
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

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
from tasks.storage import publish_file
from tasks.curate import repeats
from tasks.download import is_complete
from tasks.download_errors import DownloadError
from tasks.playlists import playlist_id
from tasks.shards import CURATION_COUNTS, load_manifest
from tasks.sources import InvalidSourceError, Source, parse_source
from tasks.steps import (
    configure,
    download_key,
    download_retry_options,
    download_task,
    downloads_dir,
    forget_stale,
    has_record,
    playlist_task,
    shards_dir,
    shards_key,
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
    same_as: str = ""  # an earlier source of the same content (key), which this one shares

    @cached_property
    def contents(self) -> dict:
        """Its manifest, read once (when `manifest` is set); {} without one."""
        return load_manifest(self.manifest) if self.manifest else {}


def _submit(source: Source, settings: IngestSettings, runner: TaskRunner) -> tuple[PrefectFuture, PrefectFuture]:
    """Submit one video's download and shards; a step whose output is missing or fails
    verification is recomputed instead of being served from the cache. A download whose
    file is gone stays cached while the video's shards will come back Cached: they never
    need the video again (a deleted download, or another machine on the same bucket)."""
    data_dir, storage = settings.data_dir, settings.storage
    out_dir = shards_dir(data_dir, source.key, settings.frames, settings.shard_mb)
    shards = configure(shards_task, data_dir, storage)
    frames = {"settings": settings.frames, "shard_mb": settings.shard_mb}
    shards_record = shards_key(source.key, settings.frames, settings.shard_mb)
    forget_stale(shards, shards_record, lambda: shards_ok(data_dir, out_dir, storage))
    download = configure(download_task, data_dir, storage, **download_retry_options(settings.download))
    params = {"source": source, "settings": settings.download}
    forget_stale(
        download,
        download_key(source, settings.download),
        lambda: is_complete(source, downloads_dir(data_dir)) or has_record(shards, shards_record),
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

    Args:
        sources: Videos to ingest, one per entry: a YouTube video or playlist URL, an http(s) URL of
            a video file, or a path on the worker (relative to its working directory, the checkout).
        settings: Where the dataset goes, how videos are fetched and which frames are kept.
    """
    logger = get_run_logger()
    if not sources:
        raise ValueError("no sources given: pass YouTube URLs, http(s) URLs or local video files")
    _check_writable(settings.data_dir)

    outcomes = _expand_playlists(sources, settings)
    with _task_runner(settings) as runner:
        pending: dict[PrefectFuture, tuple[str, PrefectFuture]] = {}
        first_of: dict[str, str] = {}  # key -> the first source of that content
        for text, outcome in outcomes.items():
            if outcome.error:  # a playlist that could not be listed
                continue
            try:
                source = parse_source(text)
            except InvalidSourceError as exc:
                outcome.error = str(exc)
                continue
            outcome.key = source.key
            if source.key in first_of:  # the same file under another name: made once, listed once
                outcome.same_as = first_of[source.key]
                continue
            first_of[source.key] = text
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
                logger.info(_video_line(outcome))
            else:  # the download's error when it failed, else the extraction's
                outcome.error = _error(extracted if downloaded.is_completed() else downloaded)
                logger.error("%s failed: %s", text, outcome.error)
            done += 1
            update_progress_artifact(progress, 100.0 * done / len(outcomes))
    _share_outcomes(outcomes)

    try:
        dataset, excluded = _write_dataset(settings, list(outcomes.values()))
    except OSError as exc:  # a full disk: the earlier dataset.json is intact (written atomically)
        if exc.errno != errno.ENOSPC:
            raise
        raise IngestFailed(
            f"cannot write {settings.data_dir / 'dataset.json'} ({exc.strerror}): free space under the data "
            "folder and rerun (finished videos are kept)"
        ) from None
    if settings.storage is not None:  # after every manifest it names (published by their tasks)
        publish_file(settings.storage, settings.data_dir, dataset)
    line, mixed = summary(dataset)
    _report(list(outcomes.values()), excluded, line if mixed else "")
    (logger.warning if mixed else logger.info)("dataset: %s", line)  # said before any failure is raised
    failed = [o for o in outcomes.values() if o.error]
    if failed:
        lines = "; ".join(f"{o.source}: {o.error}" for o in failed)
        raise IngestFailed(f"{len(failed)} of {len(outcomes)} sources failed: {lines}")
    return str(dataset)


def summary(dataset: Path) -> tuple[str, bool]:
    """dataset.json in one line (videos, frames, their size), and whether its videos mix frame
    sizes: then the line names each size's videos by title and the setting that makes one size."""
    from gan.index import ONE_SIZE, mixed_sizes  # no TensorFlow: gan/index.py reads JSON only

    try:
        index = json.loads(Path(dataset).read_text())
        line = f"{dataset}: {len(index['videos'])} videos, {index['frames']} frames"
    except (OSError, ValueError, KeyError, TypeError) as exc:  # another dataset.json, kept as it was
        return f"{dataset} (unreadable: {exc})", False
    if mixed := mixed_sizes(index["videos"]):
        return f"{line} of mixed sizes, which training refuses ({mixed}): {ONE_SIZE}", True
    return (f"{line} of {index['shape'][0]}x{index['shape'][1]}" if index["shape"] else line), False


def _video_line(outcome: Outcome) -> str:
    """The video's title, its frames kept and dropped, and their size."""
    manifest = outcome.contents
    dropped = f"{manifest.get('dropped_duplicate', 0)} near-duplicates, {manifest.get('dropped_blank', 0)} blank"
    return (f"{outcome.title or outcome.source}: kept {manifest['frames']} of {manifest.get('sampled', '?')} sampled "
            f"frames ({dropped} dropped), {manifest['height']}x{manifest['width']}")


def _check_writable(data_dir: Path) -> None:
    """A data folder that cannot be written (read-only, no permission) fails here in one line,
    not halfway through the run."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to data dir {data_dir} ({exc.strerror}): give a writable --data-dir") from None


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


def _share_outcomes(outcomes: dict[str, Outcome]) -> None:
    """Give each duplicate source the outcome of the first source of its content; a failure
    names the duplicate as the user gave it, and the source that was processed."""
    for outcome in outcomes.values():
        if outcome.same_as:
            first = outcomes[outcome.same_as]
            outcome.title, outcome.manifest = first.title, first.manifest
            if first.error:
                outcome.error = f"same content as {first.source}, which failed"


_WHERE_IT_RAN = {"data_dir", "task_runner", "workers", "dask_address", "storage"}


def _write_dataset(settings: IngestSettings, outcomes: list[Outcome]) -> tuple[Path, dict[str, list[int]]]:
    """dataset.json: the shards of every video that succeeded, in this run or an earlier one
    with the same frame settings (a failed run never takes a video out), one entry per
    content key, paths relative to data_dir; and the rule that holds frames out for
    evaluation (part of the dataset, not of a run). Returns its path and its `excluded`."""
    from gan.index import Holdout  # no TensorFlow: gan/index.py reads JSON only

    data_dir = settings.data_dir.resolve()
    path = data_dir / "dataset.json"
    earlier = _earlier_videos(path, settings)
    videos = dict(earlier or {})
    manifests = {}
    for outcome in outcomes:
        if outcome.manifest is None or outcome.same_as:
            continue
        manifest = outcome.contents
        manifests[manifest["video_key"]] = manifest
        folder = outcome.manifest.resolve().parent.relative_to(data_dir)
        videos[manifest["video_key"]] = {
            "key": manifest["video_key"],
            "source": outcome.source,
            "title": outcome.title,
            "frames": manifest["frames"],
            **{key: manifest[key] for key in CURATION_COUNTS},
            "shape": [manifest["height"], manifest["width"], manifest["channels"]],
            "manifest": str(folder / "manifest.json"),
            "shards": [str(folder / shard["file"]) for shard in manifest["shards"]],
        }
    if earlier is None and not videos and path.is_file():
        return path, {}  # another dataset, and nothing made here to replace it with: keep it
    for key, video in videos.items():  # the earlier runs' videos: their manifests are read here
        if key not in manifests:
            manifests[key] = load_manifest(data_dir / video["manifest"])
    # Frames another video already put in the dataset (a re-upload, another encode): the reader skips them.
    hashes = [(key, manifests[key].get("hashes", [])) for key in videos]  # in the dataset's order
    excluded = repeats(hashes, settings.frames) if settings.frames.dedupe else {}
    for key, video in videos.items():
        video["repeated"] = len(excluded.get(key, []))
        video["frames"] = manifests[key]["frames"] - video["repeated"]
    shapes = {tuple(video["shape"]) for video in videos.values()}
    write_json(
        path,
        {
            "version": 1,
            "frames": sum(video["frames"] for video in videos.values()),
            **{key: sum(video.get(key, 0) for video in videos.values()) for key in (*CURATION_COUNTS, "repeated")},
            "shape": list(shapes.pop()) if len(shapes) == 1 else None,
            # What made the frames, not where the run happened: the same dataset from threads or Dask.
            "settings": settings.model_dump(mode="json", exclude=_WHERE_IT_RAN),
            "holdout": Holdout().to_json(),
            "excluded": excluded,
            "videos": list(videos.values()),
            "failed": [{"source": o.source, "error": o.error} for o in outcomes if o.error],
        },
    )
    return path, excluded


def _earlier_videos(path: Path, settings: IngestSettings) -> dict[str, dict] | None:
    """The videos dataset.json lists whose manifest is still there, by key, if it was made
    with these frame settings ({} if there is none); None if it describes other frames or
    is unreadable."""
    try:
        earlier = json.loads(path.read_text())
        same = earlier["settings"]["frames"] == settings.frames.model_dump(mode="json")
        videos = {v["key"]: v for v in earlier["videos"] if (path.parent / v["manifest"]).is_file()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        get_run_logger().warning("%s is unreadable (%s): this run's videos replace it", path, exc)
        return None
    return videos if same else None


def _report(outcomes: list[Outcome], excluded: dict[str, list[int]], warning: str = "") -> None:
    """The sources' table, with the frames other videos already put in the dataset (`excluded`);
    `warning` (mixed sizes) heads its description, where the UI shows it."""
    rows = []
    for outcome in outcomes:
        manifest = outcome.contents
        rows.append(
            {  # what a person scans first on the left: the UI cuts off columns past its width
                "title": outcome.title,
                "size": f"{manifest['height']}x{manifest['width']}" if manifest else "",
                "frames": manifest.get("frames", 0),
                "status": "failed" if outcome.error else "ok",
                **{key: manifest.get(key, 0) for key in CURATION_COUNTS},
                "repeated": len(excluded.get(outcome.key, [])),
                "shards": len(manifest.get("shards", [])),
                "error": outcome.error,
                "source": outcome.source,
                "key": outcome.key,
            }
        )
    description = f"**{warning}**\n\nSources of the last ingest run" if warning else "Sources of the last ingest run"
    create_table_artifact(rows, key="ingest-sources", description=description)
