"""Everything this project takes from Prefect that no public API offers, in one module.

Tested on Prefect 3.9 (pyproject.toml pins >=3.9.1,<3.10); a new minor may move these.
- `prefect._internal.result_records.ResultRecordMetadata`: the cache record a task writes
  under its cache policy's key storage. It names a local result by absolute path, and no
  API moves a result store, so a data folder moved elsewhere gets its records rewritten
  here (`point_record_at`) instead of every cached step failing "outside of the base path".
- `prefect.server.api.server.SubprocessASGIServer`: the temporary server Prefect's client
  starts for a process without PREFECT_API_URL (one per process). Starting it ourselves
  is the only way to learn its pid, which the CLI's watchdog needs (cli/ephemeral.py).
Everything else (cache policies' `configure`, the lock protocol, artifacts, states, the
client) is public API and used directly where needed.
"""

from __future__ import annotations

from pathlib import Path

from prefect._internal.result_records import ResultRecordMetadata

from synthwave.atomic import atomic_open


def point_record_at(record: Path, results: Path) -> None:
    """Make the local cache record `record` name its result file in `results`, or delete the
    record when that file is missing (the step then runs again). A record that is absent,
    unreadable or already names a file in `results` is left to Prefect."""
    try:
        metadata = ResultRecordMetadata.load_bytes(record.read_bytes())
    except (OSError, ValueError):
        return
    stored = Path(metadata.storage_key or "")
    if not stored.is_absolute() or stored.parent == results:
        return
    if (results / stored.name).is_file():
        metadata.storage_key = str(results / stored.name)
        with atomic_open(record) as out:
            out.write(metadata.dump_bytes())
    else:
        record.unlink(missing_ok=True)


def start_temporary_server() -> int:
    """Start the temporary server this process's Prefect client would start; its pid."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's clients use: one per process
    server.start()
    return server.server_process.pid
