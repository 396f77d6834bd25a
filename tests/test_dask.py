"""Ingest on Dask: the sample videos on real worker processes, against a real Prefect server.

The dataset must be the one the thread pool writes, byte for byte, and a rerun must find
the cache the workers wrote (file locks and cache records shared across processes).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import distributed
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.ingest import _task_runner, ingest
from synthwave.errors import UserError
from synthwave.settings import FrameSettings, IngestSettings
from tasks.shards import load_manifest
from tests.loopback import SAMPLE_VIDEOS

if not (SAMPLE_VIDEOS / "bottle-detection.mp4").is_file():
    pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS} (shared/ beside the repo)", allow_module_level=True)

pytestmark = pytest.mark.slow
VIDEOS = ("bottle-detection.mp4", "milk.mkv", "book.mkv")


def settings(data_dir: Path, **runner) -> IngestSettings:
    frames = FrameSettings(every=60, size=(32, 56), dedupe=False)  # book.mkv is one image to curation
    return IngestSettings(data_dir=data_dir, frames=frames, shard_mb=0.05, **runner)


def run(sources: list[str], config: IngestSettings) -> dict[str, str]:
    """Ingest; return the task runs' final states as the API has them, by task run name."""
    state = ingest(sources, config, return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return {task_run.name: task_run.state.name for task_run in runs}


def dataset(data_dir: Path) -> dict[str, tuple[int, list[tuple[str, int, str]]]]:
    """Video key -> (frames, [(shard file, size, sha256)]) from the manifests."""
    videos = {}
    for path in sorted((data_dir / "shards").glob("*/*/manifest.json")):
        manifest = load_manifest(path)
        shards = [(s["file"], s["bytes"], s["sha256"]) for s in manifest["shards"]]
        videos[manifest["video_key"]] = (manifest["frames"], shards)
    return videos


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    clips = tmp_path_factory.mktemp("clips")
    return [str(shutil.copy(SAMPLE_VIDEOS / name, clips / name)) for name in VIDEOS]


def test_dask_workers_write_the_thread_pool_dataset(prefect_server, sources, tmp_path):
    threads = run(sources, settings(tmp_path / "threads"))
    expected = dataset(tmp_path / "threads")
    assert len(expected) == 3 and sum(frames for frames, _ in expected.values()) == 20 + 1 + 2, expected
    assert set(threads.values()) == {"Completed"} and len(threads) == 6, threads

    # A temporary local cluster of two worker processes, made from the settings alone.
    first = run(sources, settings(tmp_path / "dask", task_runner="dask", workers=2))
    assert first == threads, first  # every task ran, in a worker, and reported to this server
    assert dataset(tmp_path / "dask") == expected
    index = {name: json.loads((tmp_path / name / "dataset.json").read_text()) for name in ("threads", "dask")}
    assert index["dask"]["settings"] == index["threads"]["settings"]  # where it ran is not part of the data

    # A running cluster at an address; the rerun's tasks run on its workers and hit the cache.
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client, distributed.get_task_stream(client) as stream:
        again = run(sources, settings(tmp_path / "dask", task_runner="dask", dask_address=cluster.scheduler_address))
        workers = set(client.scheduler_info()["workers"])
    assert again == {name: "Cached" for name in threads}, again
    ran_on = {task["worker"] for task in stream.data}
    assert len(stream.data) == 6 and ran_on <= workers, stream.data
    assert dataset(tmp_path / "dask") == expected


def test_dask_without_its_extra_is_a_one_line_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'ai-synthwave\[dask\]'"):
        with _task_runner(settings(tmp_path, task_runner="dask")):
            pass
