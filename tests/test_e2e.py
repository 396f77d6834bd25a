"""End to end, as a Prefect user works: the local stack (`synthwave stack up`: a real
server, the deployments of deployments/prefect.yaml, a process worker per pool), runs of
the deployments, a failed run retried the way the UI's Retry button does it, and training.

Videos come from a real HTTP server on 127.0.0.1 that counts requests, so the retry can be
shown to download only what failed.
"""

from __future__ import annotations

import json
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.states import AwaitingRetry

from tasks.steps import run_label
from tests.loopback import SAMPLE_VIDEOS

if not (SAMPLE_VIDEOS / "bottle-detection.mp4").is_file():  # before the session's stack starts for nothing
    pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS} (shared/ beside the repo)", allow_module_level=True)
pytest.register_assert_rewrite("tests.stack_fixture")  # before the import: its asserts explain failures
from tests.stack_fixture import (  # noqa: E402
    ingest_settings, run_deployment, run_logs, tiny_train_settings, wait_for_run,
)

pytest_plugins = ["tests.stack_fixture"]
pytestmark = pytest.mark.slow


def retry_like_the_ui(flow_run_id) -> None:
    """What the UI's Retry button sends (Prefect 3.9.1's default UI, ui-v2's RetryFlowRunDialog):
    POST /api/flow_runs/{id}/set_state {"state": {"type": "SCHEDULED", "name": "AwaitingRetry",
    "message": "Retry from the UI"}, "force": true}; the v1 UI sends the same state unforced,
    `prefect flow-run retry` a forced Scheduled. The same flow run goes back to the
    deployment's work pool; the worker runs it again (run_count 2) with the same parameters."""
    with get_client(sync_client=True) as client:
        result = client.set_flow_run_state(flow_run_id, AwaitingRetry(message="Retry from the UI"), force=True)
    assert result.status.value == "ACCEPT", result


def task_states(flow_run_id, attempt: int) -> dict[str, str]:
    """Task run name -> state name, for the task runs of one attempt of a flow run."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state.name for run in runs if run.flow_run_run_count == attempt}


def artifacts_of(flow_run_id) -> dict[str, list]:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_type: dict[str, list] = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    return by_type


def test_deploy_run_fail_retry_and_train(stack_api, video_server, sample_videos, loopback_only, tmp_path):
    stack, started = stack_api, time.monotonic()

    # 1. `prefect deploy --all` from deployments/prefect.yaml ran when the stack came up.
    with get_client(sync_client=True) as client:
        deployments = {d.name: d for d in client.read_deployments()}
    assert set(deployments) == {"ingest", "train", "pipeline"}, stack.logs()
    assert deployments["ingest"].work_pool_name == "cpu-pool"
    assert deployments["train"].work_pool_name == "gpu-pool"

    # 2. Three sources over HTTP; one of them is missing (404, not retried).
    bottle = video_server.serve("/bottle.mp4", sample_videos / "bottle-detection.mp4")
    milk = video_server.serve("/milk.mkv", sample_videos / "milk.mkv", content_type="video/x-matroska")
    book = video_server.url("/book.mkv")
    data = tmp_path / "data"
    run = run_deployment("ingest/ingest", {"sources": [bottle, milk, book], "settings": ingest_settings(data)})
    failed = wait_for_run(stack, run.id)
    assert failed.state.is_failed(), f"expected Failed, got {failed.state.name}\n{run_logs(stack, run.id)}"
    assert "1 of 3 sources failed" in failed.state.message and book in failed.state.message, failed.state.message
    assert "404" in failed.state.message, failed.state.message
    counts = {path: video_server.count(path) for path in ("/bottle.mp4", "/milk.mkv", "/book.mkv")}
    assert counts == {"/bottle.mp4": 1, "/milk.mkv": 1, "/book.mkv": 1}, counts
    first = task_states(run.id, attempt=1)
    assert list(first.values()).count("Completed") == 4 and "Failed" in first.values(), first

    # 3. The source comes back; Retry the same flow run, as the UI does.
    video_server.serve("/book.mkv", sample_videos / "book.mkv", content_type="video/x-matroska")
    retry_like_the_ui(run.id)
    retried = wait_for_run(stack, run.id)
    assert retried.state.is_completed(), f"retry ended {retried.state.name}\n{run_logs(stack, run.id)}"
    assert retried.id == run.id and retried.run_count == 2
    counts = {path: video_server.count(path) for path in ("/bottle.mp4", "/milk.mkv", "/book.mkv")}
    assert counts == {"/bottle.mp4": 1, "/milk.mkv": 1, "/book.mkv": 2}, counts  # only the failed one again
    dataset = json.loads((data / "dataset.json").read_text())
    keys = {video["source"]: video["key"] for video in dataset["videos"]}
    assert set(keys) == {bottle, milk, book} and not dataset["failed"], dataset
    second = task_states(run.id, attempt=2)
    names = {source: run_label(source.rsplit("/", 1)[1].split(".")[0], keys[source]) for source in keys}  # bottle-...
    assert second == {
        **{f"{step}-{names[source]}": "Cached" for step in ("download", "shards") for source in (bottle, milk)},
        f"download-{names[book]}": "Completed",
        f"shards-{names[book]}": "Completed",
    }, second

    # 4. Train a few steps through the train deployment (gpu-pool's worker); its artifacts.
    train = run_deployment("train/train", {"settings": tiny_train_settings(data, tmp_path / "run")})
    trained = wait_for_run(stack, train.id)
    assert trained.state.is_completed(), f"train ended {trained.state.name}\n{run_logs(stack, train.id)}"
    artifacts = artifacts_of(train.id)
    assert {"image", "table", "markdown", "progress"} <= set(artifacts), artifacts
    assert all(a.data.startswith("data:image/jpeg;base64,") for a in artifacts["image"])
    assert artifacts["progress"][0].data == 100.0
    assert "ckpt-4" in next(a for a in artifacts["markdown"] if a.key.endswith("-summary")).data
    assert (tmp_path / "run" / "checkpoints" / "ckpt-4.index").is_file()

    print(f"\ne2e wall time (stack already up): {time.monotonic() - started:.1f} s")
