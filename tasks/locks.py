"""File locks for the ingest steps that survive a crashed holder."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from prefect.locking.filesystem import FileSystemLockManager


class ProcessLockManager(FileSystemLockManager):
    """Prefect's file locks, tagged with the holder's host and pid: a lock left behind by a
    process that died (kill -9, OOM) on this host is stale and taken over, where the plain
    manager (no expiry) would make every later run of that video wait forever.
    A lock from another host cannot be checked and is honoured as before."""

    _HOST = socket.gethostname()

    def _tag(self, holder: str) -> str:
        return holder if "|" in holder else f"{holder}|{self._HOST}|{os.getpid()}"

    def acquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None):  # noqa: ANN001, ANN201
        return super().acquire_lock(key, self._tag(holder), acquire_timeout, hold_timeout)

    async def aacquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None):  # noqa: ANN001, ANN201
        return await super().aacquire_lock(key, self._tag(holder), acquire_timeout, hold_timeout)

    def release_lock(self, key, holder):  # noqa: ANN001, ANN201
        return super().release_lock(key, self._tag(holder))

    def is_lock_holder(self, key, holder):  # noqa: ANN001, ANN201
        return super().is_lock_holder(key, self._tag(holder))

    def is_locked(self, key, use_cache=False):  # noqa: ANN001, ANN201
        try:
            info = self._get_lock_info(key, use_cache=use_cache)
        except ValueError:  # created, holder not yet written; or its writer died in between
            path = self._lock_path_for_key(key)
            try:
                if path.stat().st_size == 0 and time.time() - path.stat().st_mtime > 10:
                    path.unlink(missing_ok=True)
                    return False
            except OSError:
                return False
            return True
        if info is not None and dead_holder(str(info.get("holder", ""))):
            Path(info["path"]).unlink(missing_ok=True)
            self._locks.pop(key, None)
            return False
        return super().is_locked(key, use_cache=use_cache)


def dead_holder(holder: str) -> bool:
    """True if the tag names a process on this host that no longer exists."""
    _, host, pid = (holder.split("|") + ["", ""])[:3] if holder.count("|") == 2 else ("", "", "")
    if host != ProcessLockManager._HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
