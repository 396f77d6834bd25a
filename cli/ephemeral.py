"""The temporary Prefect server of a CLI run (no PREFECT_API_URL) ends with that run.

Prefect stops the server it started at exit, but kill -9 (or the OOM killer) skips that
and leaves a ~300 MB server re-parented to init. So the CLI starts the server itself,
plus a small watchdog reading a pipe only the CLI holds open: the kernel closes the pipe
however the CLI ends, and the watchdog then stops the server.
"""

from __future__ import annotations

import subprocess
import sys

from tasks.prefect_internals import start_temporary_server

# pidfd: the signal can only reach this server, never a later process given its pid.
_WATCHDOG = """
import contextlib, os, select, signal, sys
server = os.pidfd_open(int(sys.argv[1]))
sys.stdin.buffer.read()  # end of file: the CLI has ended, however it ended
with contextlib.suppress(ProcessLookupError):
    signal.pidfd_send_signal(server, signal.SIGTERM)
    if not select.select([server], [], [], 10)[0]:
        signal.pidfd_send_signal(server, signal.SIGKILL)
"""
_watchdogs: list[subprocess.Popen] = []  # kept: their pipes must stay open while the CLI runs


def tie_temporary_server() -> None:
    """Start the temporary server Prefect would start for this process, watched; nothing
    when PREFECT_API_URL names a server."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or _watchdogs:
        return
    watchdog = [sys.executable, "-c", _WATCHDOG, str(start_temporary_server())]
    _watchdogs.append(subprocess.Popen(watchdog, stdin=subprocess.PIPE, start_new_session=True))
