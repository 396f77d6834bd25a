"""The user's local stack (cli.stack: server, pools, deployments, workers) as fixtures.

A pytest plugin, so that every module listing it shares one stack per session:
    pytest_plugins = ["tests.stack_fixture"]

`stack` starts it on a free port with a temporary home and stops it at the end of the
session, whatever happened; `stack_api` points this process's Prefect client at it for one
module; `running_stack` starts another the same way with other options (PostgreSQL). The helpers wait for flow runs the way a user watches them, and fail with the
run's logs and the stack's logs (server, workers, CLI).
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from cli.stack import Stack, start, stop
from tests.loopback import SAMPLE_VIDEOS

# Workers poll every 2 s instead of 15: runs start sooner; nothing else differs from `stack up`.
TEST_ENV = {"PREFECT_WORKER_QUERY_SECONDS": "2"}
RUN_TIMEOUT_S = 300  # generous: a loaded 2-core machine, TensorFlow imported in each flow run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_stack(home: Path, **options: Any) -> Iterator[Stack]:
    """A stack on a free port (`options` as for cli.stack.start), stopped at the end whatever happened."""
    started = time.monotonic()
    try:
        running = start(home, port=free_port(), extra_env=TEST_ENV, **options)
        print(f"\nstack up in {time.monotonic() - started:.1f} s at {running.ui_url} (home {home})")
        yield running
    finally:
        stop(home)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def stack_api(stack: Stack) -> Iterator[Stack]:
    """This process's Prefect client talks to the stack for the module's tests."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        yield stack


@pytest.fixture(scope="session")
def stack_dataset(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset ingested by the stack's ingest deployment from the local sample clips."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if not (SAMPLE_VIDEOS / "milk.mkv").is_file():
        pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS} (shared/ is cloned beside the repo)")
    data = tmp_path_factory.mktemp("stack-data")
    clips = tmp_path_factory.mktemp("clips")
    sources = [str(shutil.copy(SAMPLE_VIDEOS / name, clips / name)) for name in ("bottle-detection.mp4", "milk.mkv")]
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        run = run_deployment("ingest/ingest", {"sources": sources, "settings": ingest_settings(data)})
        final = wait_for_run(stack, run.id)
    assert final.state.is_completed(), f"ingest of the sample clips ended {final.state.name}: {final.state.message}"
    return data


def ingest_settings(data_dir: Path) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "frames": {"every": 60, "size": [32, 56], "dedupe": False},  # book.mkv is one image to curation
        "download": {"retries": 2, "retry_delay_s": 0.05, "timeout_s": 10, "allowed_hosts": ["127.0.0.1"]},
        "shard_mb": 0.05,
    }


def tiny_train_settings(data_dir: Path, run_dir: Path) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir), "run_dir": str(run_dir), "steps": 4, "batch_size": 16,
        "g_filters": 32, "d_filters": 16, "sample_every": 2, "checkpoint_every": 2, "shuffle_buffer": 64,
    }


def run_deployment(name: str, parameters: dict[str, Any]):
    """Create a flow run of a deployment, as `prefect deployment run` does; the stack's worker runs it."""
    from prefect.deployments import run_deployment as create_run

    return create_run(name, parameters=parameters, timeout=0)  # timeout=0: return at once, don't watch


def wait_for_run(stack: Stack, flow_run_id: UUID, timeout_s: float = RUN_TIMEOUT_S):
    """Poll the API until the flow run is in a final state; return it."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                state = run.state.name if run.state else "no state"
                logs = run_logs(stack, flow_run_id)
                pytest.fail(f"flow run {run.name} still {state} after {timeout_s:.0f} s\n{logs}")
            time.sleep(1)


def run_logs(stack: Stack, flow_run_id: UUID, lines: int = 60) -> str:
    """The flow run's logs from the API, then the stack's own logs: what a failure message needs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    try:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), sort=LogSort.TIMESTAMP_ASC
            )
        flow_logs = "\n".join(f"{log.timestamp:%H:%M:%S} {log.message}" for log in logs[-lines:])
    except Exception as exc:  # noqa: BLE001 (the stack's own logs still help)
        flow_logs = f"(could not read the flow run's logs: {exc})"
    return f"--- flow run {flow_run_id} logs\n{flow_logs}\n{stack.logs()}"
