"""Faults and crashes lose nothing: real subprocesses, real SIGKILL, a real full disk.

After each fault the next run completes, no partial file is read as complete, and every
manifest the data folder holds matches its shards' checksums.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from flows.ingest import IngestFailed, ingest
from synthwave.settings import DownloadSettings, FrameSettings, IngestSettings
from tasks import shards as shards_module
from tasks.download import is_complete
from tasks.sources import parse_source
from tasks.steps import downloads_dir, run_label, shards_dir
from tests.reliability.helpers import assert_cache_sound, assert_dataset_sound, gradient, make_video

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 180  # a rerun that hangs on a stale lock fails here instead of hanging CI


def settings(data_dir: Path, **frames) -> IngestSettings:
    return IngestSettings(
        data_dir=data_dir,
        frames=FrameSettings(**{"every": 60, "size": (32, 56), "dedupe": False, **frames}),
        download=DownloadSettings(retries=0, retry_delay_s=0, timeout_s=60, allowed_hosts=("127.0.0.1",)),
        shard_mb=0.05,
    )


def child_env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def start_ingest(config: IngestSettings, *sources: str, go: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "tests.reliability.ingest_child", config.model_dump_json(), *sources]
    env = {**child_env(), **({"INGEST_CHILD_GO_FILE": str(go)} if go else {})}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> dict:
    try:
        out, err = process.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"ingest did not finish in {CHILD_TIMEOUT_S} s (a stale lock?)\n{err[-3000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"exit {process.returncode}\n{err[-3000:]}"
    return json.loads(lines[-1])


def wait_for(condition, process: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the ingest ended before {what}:\n{process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def kill_9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def shard_states(name: str, key: str) -> list[str]:
    """States of the shards task runs of the video `name` (its file or URL stem) and `key`."""
    run_name = f"shards-{run_label(name, key)}"
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[run_name])))
    return sorted(run.state.name for run in runs)


# -- kill -9 ---------------------------------------------------------------------------------------


def test_kill_9_during_a_download_then_the_rerun_completes(prefect_server, video_server, sample_videos, tmp_path):
    body = (sample_videos / "milk.mkv").read_bytes()
    url = video_server.stall("/stall.mkv", body, after=len(body) // 2, seconds=300, content_type="video/x-matroska")
    source = parse_source(url)
    config = settings(tmp_path / "data")
    downloads = downloads_dir(config.data_dir)

    def stalled() -> bool:  # the server sent half and stalls; the child has its staging file open
        return video_server.count("/stall.mkv") >= 1 and any(downloads.glob(f".{source.key}.tmp-*/video*"))

    process = start_ingest(config, url)
    wait_for(stalled, process, "the download stalling mid-body")
    time.sleep(0.5)
    kill_9(process)

    assert not is_complete(source, downloads)
    assert [p.name for p in downloads.iterdir() if not p.name.startswith(".")] == []  # no final name
    assert list((config.data_dir / ".prefect" / "locks").glob("*.lock"))  # the dead process's lock is left

    video_server.serve("/stall.mkv", body, content_type="video/x-matroska")
    outcome = finish(start_ingest(config, url))
    assert outcome["state"] == "COMPLETED", outcome
    assert (downloads / f"{source.key}.mkv").read_bytes() == body
    assert [p.name for p in downloads.iterdir() if p.is_dir()] == []  # the dead one's staging swept
    assert video_server.count("/stall.mkv") == 2
    assert_dataset_sound(config.data_dir)
    assert_cache_sound(config.data_dir)


def test_kill_9_during_shard_writing_then_the_rerun_completes(prefect_server, tmp_path):
    video = make_video(tmp_path / "long.avi", [gradient(240, 320, i) for i in range(600)])
    config = settings(tmp_path / "data", every=1, size=None, downsample=1)
    key = parse_source(str(video)).key
    out = shards_dir(config.data_dir, key, config.frames, config.shard_mb)

    def some_shards() -> bool:  # two closed shards in the temp folder: well into the video
        return len(list(out.parent.glob(f".{out.name}.tmp-*/*.tfrecord"))) >= 3

    process = start_ingest(config, str(video))
    wait_for(some_shards, process, "shards being written")
    kill_9(process)

    assert not out.exists()  # nothing under the final name: the temp folder is never read
    assert not (config.data_dir / "dataset.json").exists()

    outcome = finish(start_ingest(config, str(video)))
    assert outcome["state"] == "COMPLETED", outcome
    dataset = assert_dataset_sound(config.data_dir)
    assert dataset["frames"] == 600
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # the dead writer's temp folder swept
    assert_cache_sound(config.data_dir)
    # The rerun extracted (Completed, not Cached): the killed run's task never finished. Its own
    # "Running" report may or may not have reached the server before the kill (states go out in
    # the background), so it is allowed, not required.
    assert [state for state in shard_states("long", key) if state != "Running"] == ["Completed"]


def test_two_ingest_processes_over_overlapping_sources(prefect_server, video_server, sample_videos, tmp_path):
    milk = sample_videos / "milk.mkv"
    x, z = (video_server.serve(f"/{n}.mkv", milk, "video/x-matroska") for n in "xz")
    # y takes seconds to extract, so the second run decides what to do while the first is at it.
    slow = make_video(tmp_path / "y.avi", [gradient(240, 320, i) for i in range(900)])
    y = video_server.serve("/y.mkv", slow, "video/x-msvideo")
    config = settings(tmp_path / "data", every=1, size=None, downsample=1)
    y_out = shards_dir(config.data_dir, parse_source(y).key, config.frames, config.shard_mb)
    go = tmp_path / "go"
    first, second = start_ingest(config, x, y), start_ingest(config, y, z, go=go)
    wait_for(lambda: any(y_out.parent.glob(".*.tmp-*")), first, "the first run extracting y")
    go.touch()  # the second run decides about y while the first is writing it
    outcomes = [finish(first), finish(second)]

    assert [o["state"] for o in outcomes] == ["COMPLETED", "COMPLETED"], outcomes
    assert {n: video_server.count(f"/{n}.mkv") for n in "xyz"} == {"x": 1, "y": 1, "z": 1}
    assert shard_states("y", parse_source(y).key) == ["Cached", "Completed"]  # extracted once, then read
    assert_cache_sound(config.data_dir)
    assert_dataset_sound(config.data_dir)  # the last writer's dataset.json is whole


def test_two_trainings_on_one_run_dir_never_interleave(tmp_path):
    """A real second process holds the run directory; training here is refused at once, naming it."""
    from gan.loop import run_training
    from gan.run import RunDir, RunDirError
    from synthwave.settings import TrainSettings

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gan.run import RunDir; from pathlib import Path; "
         "RunDir(Path(sys.argv[1])).lock(); print('locked', flush=True); time.sleep(600)", str(run)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"in use by pid {holder.pid}"):
            run_training(TrainSettings(run_dir=run, steps=1), [], (32, 56, 3), 1)
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # no config.json, no checkpoint
    finally:
        kill_9(holder)
    os.close(RunDir(run).lock())  # kill -9 leaves no stale lock: the kernel released it


# -- damage after the fact ------------------------------------------------------------------------


def test_a_deleted_or_truncated_download_is_fetched_again(prefect_server, video_server, sample_videos, tmp_path):
    body = (sample_videos / "milk.mkv").read_bytes()
    url = video_server.serve("/milk.mkv", body, "video/x-matroska")
    config = settings(tmp_path / "data")
    file = downloads_dir(config.data_dir) / f"{parse_source(url).key}.mkv"
    ingest([url], config)

    file.unlink()
    ingest([url], config)  # its shards are intact: the video is not needed, so not fetched
    assert not file.exists() and video_server.count("/milk.mkv") == 1

    shutil.rmtree(config.data_dir / "shards")  # now the video is needed again
    ingest([url], config)
    assert file.read_bytes() == body and video_server.count("/milk.mkv") == 2

    file.write_bytes(body[: len(body) // 2])  # cut short on disk, under its final name
    shutil.rmtree(config.data_dir / "shards")
    ingest([url], config)
    assert file.read_bytes() == body and video_server.count("/milk.mkv") == 3
    assert_cache_sound(config.data_dir)


# -- disk full ----------------------------------------------------------------------------------


def test_disk_full_while_writing_shards(prefect_server, small_disk, sample_videos, tmp_path, monkeypatch):
    """ENOSPC mid-video: a clear error naming the source, the earlier video's shards intact,
    no temp folder left, and the same run succeeds once there is room."""
    data = (small_disk or tmp_path) / "data"
    print(f"disk: {'a 3 MB tmpfs' if small_disk else 'ENOSPC injected at the shard write'}")
    milk = str(shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv"))
    bottle = str(shutil.copy(sample_videos / "bottle-detection.mp4", tmp_path / "bottle.mp4"))
    small = settings(data)
    big = settings(data, every=4, size=None, downsample=2)  # ~300 frames of 180x320: ~25 MB of PNG
    ingest([milk], small)
    if small_disk is None:  # no tmpfs: the same error at the same place, injected
        real_write = shards_module._HashingFile.write

        def write(self, data: bytes) -> int:
            if self.bytes > 3_000_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(self, data)

        monkeypatch.setattr(shards_module._HashingFile, "write", write)

    state = ingest([bottle], big, return_state=True)

    assert state.is_failed()
    with pytest.raises(IngestFailed) as caught:
        state.result()
    message = str(caught.value)
    assert bottle in message and "No space left on device" in message and "free space" in message, message
    assert "\n" not in message
    out = shards_dir(data, parse_source(bottle).key, big.frames, big.shard_mb)
    assert not out.exists() and list(out.parent.glob(".*")) == []  # no partial output, no temp folder
    assert_cache_sound(data)  # milk's shards intact

    if small_disk is None:
        monkeypatch.undo()
    else:
        subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    ingest([milk, bottle], big.model_copy(update={"frames": big.frames}))
    assert len(assert_dataset_sound(data)["videos"]) == 2
