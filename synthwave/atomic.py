"""Write to a temporary name, then rename: readers never see a partial file or folder."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from synthwave.processes import pid_alive


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A hidden temp file beside `path` for a writer to fill; on success it is fsynced and
    renamed over `path`, on error removed.

    The temp name keeps `path`'s suffix (cv2.VideoWriter picks the container from it), and
    the file is made rw-r--r-- as a plain write would be: mkstemp's 0600 would hide run
    outputs from a static server running as another user.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator[IO[Any]]:
    """`atomic_path`, opened: the file handle to write to."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_json(path: Path | str, data: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def temp_dir(target: Path) -> Path:
    """A new hidden folder beside `target` for a writer to fill and then move into place. Its
    name holds this process's pid, so `sweep_temp_dirs` can tell a dead writer's leftovers."""
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir(parents=True)
    return tmp


def sweep_temp_dirs(target: Path) -> None:
    """Remove `temp_dir(target)` folders whose writer no longer exists (kill -9, OOM)."""
    for folder in target.parent.glob(f".{target.name}.tmp-*"):
        pid = folder.name.rpartition(".tmp-")[2].split("-")[0]
        if folder.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
