"""The stack's Prefect server on PostgreSQL: Debian's PostgreSQL on 127.0.0.1 with a
throwaway data folder, `synthwave stack up --database-url`, and the ingest deployment
run end to end; the flow run is read back from PostgreSQL itself.

initdb refuses to run as root (CI's user), so as root the server runs as the `postgres`
user that Debian's package creates, from a folder that user owns.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loopback import SAMPLE_VIDEOS

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)  # Debian's layout
if BIN is None or not (BIN / "initdb").is_file():
    pytest.skip("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)", allow_module_level=True)
if not (SAMPLE_VIDEOS / "milk.mkv").is_file():
    pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS} (shared/ beside the repo)", allow_module_level=True)
pytest.register_assert_rewrite("tests.stack_fixture")
from tests.stack_fixture import free_port, ingest_settings, run_deployment, run_logs, running_stack, wait_for_run  # noqa: E402

pytestmark = pytest.mark.slow


def as_owner(*command: str | Path) -> list[str]:
    """The command as the `postgres` user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *map(str, command)] if os.geteuid() == 0 else list(map(str, command))


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 (TCP only, trust auth) for this module; its asyncpg URL."""
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
    folder = Path(tempfile.mkdtemp(prefix="synthwave-pg-"))  # not under pytest's root-only tmp
    if os.geteuid() == 0:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()
    try:
        subprocess.run(as_owner(BIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust"), check=True, capture_output=True)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
        subprocess.run(
            as_owner(BIN / "pg_ctl", "-D", data, "-o", options, "-l", folder / "server.log", "-w", "start"),
            check=True, capture_output=True,
        )
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_owner(BIN / "pg_ctl", "-D", data, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def flow_run_state(url: str, flow_run_id) -> str | None:
    """The flow run's state as stored in PostgreSQL, read with asyncpg (what the server uses)."""
    import asyncpg

    async def query() -> str | None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            return await connection.fetchval("SELECT state_name FROM flow_run WHERE id = $1", flow_run_id)
        finally:
            await connection.close()

    return asyncio.run(query())


def test_stack_on_postgres_runs_the_ingest_deployment(postgres, tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    clips = tmp_path / "clips"
    clips.mkdir()
    sources = [str(shutil.copy(SAMPLE_VIDEOS / name, clips / name)) for name in ("milk.mkv", "book.mkv")]
    with running_stack(tmp_path / "stack", database_url=postgres) as stack, temporary_settings({PREFECT_API_URL: stack.api_url}):
        run = run_deployment("ingest/ingest", {"sources": sources, "settings": ingest_settings(tmp_path / "data")})
        final = wait_for_run(stack, run.id)
        assert final.state.is_completed(), f"ingest ended {final.state.name}\n{run_logs(stack, run.id)}"
    assert flow_run_state(postgres, run.id) == "Completed"  # the server wrote to PostgreSQL ...
    assert not (tmp_path / "stack" / "prefect.db").exists()  # ... and not to SQLite
    assert (tmp_path / "data" / "dataset.json").is_file()
