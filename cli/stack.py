"""The local Prefect stack, run the way a Prefect user runs it: a server with its UI, the
work pools, the deployments of deployments/prefect.yaml and one process worker per pool.

    synthwave stack up  [--home .synthwave/stack] [--port 4200] [--database-url URL]
    synthwave stack down [--home .synthwave/stack]

Each part is a background process of this venv's Prefect, in its own process group,
listening on 127.0.0.1 only. Under `home`: the SQLite database (prefect.db) unless a
PostgreSQL URL is given, a private Prefect home (prefect/), one log and one pid file per
process (logs/, pids/). SQLite serialises writes: PostgreSQL is for many workers and runs.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from synthwave.errors import UserError
from synthwave.processes import command, pid_alive

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = "deployments/prefect.yaml"
POOLS = ("cpu-pool", "gpu-pool")
PREFECT = [sys.executable, "-m", "prefect"]
# The async drivers Prefect's server runs on (asyncpg is a Prefect dependency).
DATABASE_URL = re.compile(r"(postgresql\+asyncpg|sqlite\+aiosqlite)://\S+")


class StackError(UserError, RuntimeError):
    """A part of the stack did not start; the message ends with its log."""


@dataclass(frozen=True)
class Stack:
    home: Path
    port: int
    env: Mapping[str, str]  # the environment of every process of the stack

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def logs(self, lines: int = 40) -> str:
        """The last lines of every log, for error messages."""
        parts = []
        for log in sorted((self.home / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts)


def environment(
    home: Path, port: int, extra: Mapping[str, str] = {}, database_url: str | None = None
) -> dict[str, str]:
    home = home.resolve()
    return {
        **os.environ,
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url or f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "DO_NOT_TRACK": "1",
        **extra,
    }


def start(
    home: Path, port: int = 4200, extra_env: Mapping[str, str] = {}, timeout_s: float = 180,
    database_url: str | None = None,
) -> Stack:
    """Start server, pools, deployments and workers; `extra_env` goes to every process.
    `database_url` (postgresql+asyncpg://user:password@host:5432/db) replaces SQLite; the
    server creates its tables in that database on start."""
    home = home.resolve()
    if database_url is not None and not DATABASE_URL.fullmatch(database_url):
        raise StackError(
            "--database-url must look like postgresql+asyncpg://user:password@host:5432/prefect "
            "(Prefect's server needs the asyncpg driver)"
        )
    if _running(home):
        raise StackError(f"a stack is already running from {home}: `synthwave stack down --home {home}` first")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise StackError(f"port {port} on 127.0.0.1 is in use: pick another with --port")
    for folder in ("logs", "pids", "prefect"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    stack = Stack(home, port, environment(home, port, extra_env, database_url))
    try:
        _spawn(stack, "server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        _wait(stack, "the server to answer /api/health", timeout_s, lambda: _get(stack, "/health"))
        for pool in POOLS:
            if _prefect(stack, "work-pool", "inspect", pool, check=False).returncode != 0:
                _prefect(stack, "work-pool", "create", pool, "--type", "process")
        _prefect(stack, "--no-prompt", "deploy", "--all", "--prefect-file", PREFECT_FILE)
        for pool in POOLS:
            _spawn(stack, f"worker-{pool}", "worker", "start", "--pool", pool, "--name", f"synthwave-{pool}")
        for pool in POOLS:
            workers = f"/work_pools/{pool}/workers/filter"
            _wait(stack, f"a worker to poll {pool}", timeout_s, lambda: _post(stack, workers))
    except BaseException:
        stop(home)
        raise
    return stack


def stop(home: Path, timeout_s: float = 20) -> list[str]:
    """Stop every process started by `start` from `home` (workers first); safe to repeat.
    Returns the names of the processes that were running."""
    pids = home.resolve() / "pids"
    stopped = []
    for pid_file in sorted(pids.glob("*.pid"), key=lambda p: p.stem == "server"):
        pid = int(pid_file.read_text())
        if _alive(pid):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    return stopped


def next_steps(stack: Stack) -> str:
    prefect, home = command("prefect"), stack.home.resolve()
    return f"""\
Prefect UI: {stack.ui_url}
Logs and pids: {home}/logs, {home}/pids

Next:
  export PREFECT_API_URL={stack.api_url}     # point Prefect CLI commands at this server
  {prefect} deployment run ingest/ingest --params '{{"sources": ["/path/to/video.mp4"]}}' --watch
  {prefect} deployment run train/train --watch
  or in the UI: Deployments > train > Run > Quick run; a failed run's page has Retry.
  Redeploy after editing deployments/prefect.yaml (from {REPO}):
  {prefect} deploy --all --prefect-file {PREFECT_FILE}
Stop it all: {command("synthwave")} stack down --home {home}"""


# processes


def _spawn(stack: Stack, name: str, *args: str) -> None:
    log = open(stack.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
    with log:
        process = subprocess.Popen(
            [*PREFECT, *args], cwd=REPO, env=stack.env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,  # its own group: stop() ends its children too
        )
    (stack.home / "pids" / f"{name}.pid").write_text(str(process.pid))


def _prefect(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """A Prefect CLI command from the repo root (prefect.yaml's paths are relative to it)."""
    result = subprocess.run(
        [*PREFECT, *args], cwd=REPO, env=stack.env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    with open(stack.home / "logs" / "cli.log", "a") as log:
        log.write(f"$ prefect {' '.join(args)}\n{result.stdout}{result.stderr}\n")
    if check and result.returncode != 0:
        raise StackError(f"`prefect {' '.join(args)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def _wait(stack: Stack, what: str, timeout_s: float, ready) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for pid_file in (stack.home / "pids").glob("*.pid"):
            if not _alive(int(pid_file.read_text())):
                raise StackError(f"{pid_file.stem} exited while waiting for {what}\n{stack.logs()}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"gave up after {timeout_s:.0f} s waiting for {what}\n{stack.logs()}")
        time.sleep(0.5)


def _get(stack: Stack, path: str) -> bool:
    return httpx.get(stack.api_url + path, timeout=5).is_success


def _post(stack: Stack, path: str) -> list:
    response = httpx.post(stack.api_url + path, json={}, timeout=5)
    return response.json() if response.is_success else []


def _alive(pid: int) -> bool:
    """Alive and still the leader of the group we started (not a reused pid)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that exited: reap it
            return False
    except ChildProcessError:
        pass  # not our child (`stack down` from another shell) or already reaped
    try:
        return pid_alive(pid) and os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _running(home: Path) -> bool:
    return any(_alive(int(p.read_text())) for p in (home / "pids").glob("*.pid"))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
