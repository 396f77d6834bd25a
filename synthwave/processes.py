"""Processes: whether one still exists (a crashed writer's leftovers), and how to type a command."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists, also one of another user (signal 0 only checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def command(name: str) -> str:
    """`name` as a user can type it: bare when PATH finds this environment's own, else its full path."""
    own = Path(sys.executable).parent / name
    return name if shutil.which(name) == str(own) else str(own)
