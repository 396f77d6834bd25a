"""kill -9 of a CLI run leaves no temporary Prefect server behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.loopback import sample_videos, video_server  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid`."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                found.append(int(status.parent.name))
        except OSError:
            continue  # ended meanwhile
    return found


def is_server(pid: int) -> bool:
    try:
        return b"prefect.server.api.server:create_app" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def wait_until(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)


def test_kill_9_of_an_ingest_ends_its_temporary_server(video_server, sample_videos, tmp_path):
    body = (sample_videos / "milk.mkv").read_bytes()
    url = video_server.stall("/stall.mkv", body, after=1000, seconds=120, content_type="video/x-matroska")
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # the child's own temporary server and database
    cli = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest", url, "--data-dir", str(tmp_path / "data"),
         "--allowed-hosts", "127.0.0.1", "--retries", "0"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "cli.log", "wb"),  # noqa: SIM115
    )  # fmt: skip
    servers: list[int] = []
    try:
        wait_until(lambda: video_server.count("/stall.mkv") >= 1 or cli.poll() is not None, "the ingest downloading")
        assert cli.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
        servers = [pid for pid in children(cli.pid) if is_server(pid)]
        assert servers, "the ingest started no temporary server"
        cli.send_signal(signal.SIGKILL)
        cli.wait()
        wait_until(lambda: not any(map(alive, servers)), "the temporary server end with the killed ingest", 30)
    finally:
        servers = servers or [pid for pid in children(cli.pid) if is_server(pid)]
        cli.kill()
        for pid in filter(alive, servers):  # on failure: not left running by the test either
            os.kill(pid, signal.SIGKILL)
