"""A run's checkpoints: resume from the newest one that restores, and save with one clear
error when the disk is full.

A resume must not be blocked by the newest checkpoint alone: a crash or a full disk can
leave it missing a file or damaged while older ones are whole, and each holds the step
it was written at, so the loop goes on from there (its history cut to that step).
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from gan.run import RunDirError
from gan.step import DCGAN

logger = logging.getLogger(__name__)

_NUMBER = re.compile(r"ckpt-(\d+)\.index")  # tf.train.CheckpointManager's default name


class CheckpointWriteError(RunDirError):
    """A checkpoint could not be written (a full disk); the older ones are kept."""


def _reason(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def newest_first(directory: Path) -> list[str]:
    """The checkpoint prefixes in `directory`, newest first (by the `.index` files there)."""
    matches = (_NUMBER.fullmatch(path.name) for path in directory.glob("ckpt-*.index"))
    numbers = sorted((int(match[1]) for match in matches if match), reverse=True)
    return [str(directory / f"ckpt-{number}") for number in numbers]


def restore_newest(make: Callable[[], DCGAN], directory: Path) -> DCGAN:
    """A model from `make`, restored from the newest checkpoint in `directory` that restores
    (untrained if there is none); a warning names the checkpoints skipped and the one used.

    Each attempt gets a fresh model: a restore that fails halfway leaves nothing behind.
    """
    skipped: list[tuple[str, str]] = []
    for path in newest_first(directory):
        gan = make()
        try:
            gan.checkpoint().restore(path).assert_existing_objects_matched()
        except Exception as error:  # shapes, missing objects, damaged files: each raises its own type
            skipped.append((path, _reason(error)))
            continue
        if skipped:
            names = "; ".join(f"{Path(p).name} ({reason})" for p, reason in skipped)
            logger.warning("resuming from %s, the newest checkpoint that restores: skipped %s", path, names)
        return gan
    if skipped:
        newest, reason = skipped[0]
        raise RunDirError(
            f"checkpoint {newest} does not restore into this model ({reason}), nor does any older one: it was "
            "written by another version of synthwave or is damaged; use that version or another --run-dir"
        )
    return make()


def sweep_partial_saves(directory: Path) -> None:
    """Remove what a save cut short left (TensorFlow's `ckpt-N_temp*` folders): the newest
    whole checkpoint is still there, and nothing reads these."""
    for partial in directory.glob("ckpt-*_temp*"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)


def save(manager: tf.train.CheckpointManager, step: int) -> str:
    """`manager.save` at `step`; a full disk is one line, and the partial save is removed."""
    try:
        return manager.save(checkpoint_number=step)
    except (tf.errors.ResourceExhaustedError, OSError) as error:
        if isinstance(error, OSError) and error.errno != errno.ENOSPC:
            raise
        sweep_partial_saves(Path(manager.directory))
        raise CheckpointWriteError(
            f"cannot write checkpoint {step} under {manager.directory} ({_reason(error)}): free space there "
            f"and rerun to resume from {manager.latest_checkpoint or 'the start'}"
        ) from None
