"""File locks for the ingest steps, held by the kernel so a crashed holder never blocks a rerun."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from pathlib import Path

from prefect.locking.protocol import LockManager

# The locks this process holds: lock file -> (holder, its open descriptor). Module-level so
# every manager of one folder agrees, and so a manager stays picklable (Dask ships it).
_HELD: dict[Path, tuple[str, int]] = {}
_GUARD = threading.Lock()
_POLL_S = 0.05


class ProcessLockManager(LockManager):
    """Prefect's lock protocol over flock(2) on `<key>.lock` files.

    The kernel releases a lock when its holder's descriptor closes, also when the process
    dies (kill -9, OOM), so there is nothing stale to detect or take over; and taking a
    lock is one system call, so no other thread or process ever sees a half-made one (the
    lock files Prefect's FileSystemLockManager creates empty and fills afterwards did:
    "EOF while parsing"). Lock files are left in place: removing one would let a waiter
    lock the removed file while a newcomer locks a new one. `hold_timeout` is ignored: a
    lock is held until released or its holder dies.
    """

    def __init__(self, lock_files_directory: Path) -> None:
        self.lock_files_directory = Path(lock_files_directory).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.lock_files_directory / f"{key}.lock"

    def _try(self, key: str, holder: str) -> bool:
        """Take the lock without waiting; True if `holder` has it now."""
        path = self._path(key)
        with _GUARD:
            held = _HELD.get(path)
            if held is not None:
                return held[0] == holder
            self.lock_files_directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            _HELD[path] = (holder, fd)
            return True

    def acquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None):  # noqa: ANN001, ANN201
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try(key, holder):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    async def aacquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None):  # noqa: ANN001, ANN201
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while not self._try(key, holder):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return True

    def release_lock(self, key, holder):  # noqa: ANN001, ANN201
        path = self._path(key)
        with _GUARD:
            held = _HELD.get(path)
            if held is None or held[0] != holder:
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            del _HELD[path]
            os.close(held[1])  # closing the descriptor releases the flock

    def is_locked(self, key, use_cache=False):  # noqa: ANN001, ANN201
        path = self._path(key)
        with _GUARD:
            if path in _HELD:
                return True
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                return False
            try:  # free if it can be taken at once; given back straight away
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return False
            except BlockingIOError:
                return True
            finally:
                os.close(fd)

    def is_lock_holder(self, key, holder):  # noqa: ANN001, ANN201
        with _GUARD:
            held = _HELD.get(self._path(key))
        return held is not None and held[0] == holder

    def wait_for_lock(self, key, timeout=None):  # noqa: ANN001, ANN201
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True

    async def await_for_lock(self, key, timeout=None):  # noqa: ANN001, ANN201
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_S)
        return True
