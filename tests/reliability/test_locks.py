"""The ingest steps' file locks under contention: many threads and processes, one key, no error,
no overlap."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
import time
import uuid
from pathlib import Path

from tasks.locks import ProcessLockManager

THREADS, ROUNDS = 16, 100


def test_many_threads_contending_for_one_key_never_fail_nor_overlap(tmp_path):
    """As in one ingest of the same file under many names: each source's step has its own
    manager over the same lock folder, and all of them want the same key at once."""
    inside, most_inside, acquired = 0, 0, 0
    errors: list[BaseException] = []
    count = threading.Lock()
    start = threading.Barrier(THREADS)

    def contend() -> None:
        nonlocal inside, most_inside, acquired
        locks = ProcessLockManager(lock_files_directory=tmp_path / "locks")
        start.wait()
        for _ in range(ROUNDS):
            holder = str(uuid.uuid4())
            try:
                assert locks.acquire_lock("download-file-0123456789abcdef-x", holder)
                assert locks.is_lock_holder("download-file-0123456789abcdef-x", holder)
                with count:
                    inside += 1
                    most_inside, acquired = max(most_inside, inside), acquired + 1
                time.sleep(0)  # let another thread in, if the lock would
                with count:
                    inside -= 1
                locks.release_lock("download-file-0123456789abcdef-x", holder)
            except BaseException as error:  # noqa: BLE001  (counted: the point of the test)
                errors.append(error)

    run_in_threads(contend, THREADS)

    print(f"{acquired} acquisitions by {THREADS} threads, {len(errors)} errors, at most {most_inside} inside")
    assert errors == [], f"{len(errors)} errors, e.g. {errors[0]!r}"
    assert (acquired, most_inside) == (THREADS * ROUNDS, 1)
    assert not ProcessLockManager(lock_files_directory=tmp_path / "locks").is_locked("download-file-0123456789abcdef-x")


def test_a_lock_held_here_is_seen_locked_and_refused_to_another_holder(tmp_path):
    ours, theirs = ProcessLockManager(tmp_path / "locks"), ProcessLockManager(tmp_path / "locks")
    assert ours.acquire_lock("k", "a") and ours.acquire_lock("k", "a")  # re-entrant for its holder
    assert theirs.is_locked("k") and not theirs.is_lock_holder("k", "b")
    assert not theirs.acquire_lock("k", "b", acquire_timeout=0.2)
    ours.release_lock("k", "a")
    assert theirs.acquire_lock("k", "b", acquire_timeout=0.2)


def _count_under_the_lock(folder: str, counter: str, threads: int, rounds: int) -> int:
    """In a process of its own: `threads` threads each add 1 to the file `counter`, `rounds`
    times, under the lock; a read-modify-write that only stays exact if no one else is inside."""
    errors = []

    def contend() -> None:
        locks = ProcessLockManager(lock_files_directory=Path(folder))
        for _ in range(rounds):
            holder = str(uuid.uuid4())
            try:
                assert locks.acquire_lock("k", holder)
                value = int(Path(counter).read_text() or 0)
                Path(counter).write_text(str(value + 1))
                locks.release_lock("k", holder)
            except BaseException as error:  # noqa: BLE001  (counted)
                errors.append(error)

    run_in_threads(contend, threads)
    return len(errors)


def test_processes_contending_for_one_key_never_overlap(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    spawn = multiprocessing.get_context("spawn")  # as Dask's worker processes start
    with concurrent.futures.ProcessPoolExecutor(3, mp_context=spawn) as pool:
        jobs = [pool.submit(_count_under_the_lock, str(tmp_path / "locks"), str(counter), 4, 50) for _ in range(3)]
        errors = [job.result() for job in jobs]
    assert errors == [0, 0, 0] and counter.read_text() == str(3 * 4 * 50)


def run_in_threads(target, count: int) -> None:  # noqa: ANN001
    """`target` in `count` threads at once; returns when all have ended."""
    workers = [threading.Thread(target=target) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
