"""Object storage against a real S3 server (moto, 127.0.0.1), a real Prefect server and real videos.

"Machines" are separate local folders on one bucket; a machine's folder is deleted before
the next one runs, so nothing can be read from it behind the bucket's back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.ingest import ingest
from flows.train import train
from synthwave.settings import DownloadSettings, FrameSettings, IngestSettings, StorageSettings, TrainSettings
from tasks.storage import DATASET, StorageError, open_bucket, publish_file, publish_shards, stage_dataset
from tasks.shards import verify_manifest, write_video_shards
from tasks.steps import downloads_dir
from tests.s3_fixture import s3, s3_server  # noqa: F401

pytestmark = pytest.mark.slow


def storage(s3, prefix: str = "data") -> StorageSettings:
    return StorageSettings(url=s3.url(prefix), endpoint_url=s3.endpoint_url)


def ingest_settings(data_dir: Path, store: StorageSettings | None = None) -> IngestSettings:
    return IngestSettings(
        data_dir=data_dir,
        frames=FrameSettings(every=5, size=(32, 56), dedupe=False),  # milk, book: one image each to curation
        download=DownloadSettings(allowed_hosts=["127.0.0.1"], retries=0, timeout_s=10),
        shard_mb=0.05,  # several shards per video
        storage=store,
    )


def task_states(state) -> dict[str, str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return {run.name: run.state.name for run in runs}


def run_ingest(sources: list[str], config: IngestSettings) -> dict[str, str]:
    state = ingest(sources, config, return_state=True)
    assert state.is_completed(), state.message
    return task_states(state)


def test_publish_then_stage_round_trip_with_checksums(s3, sample_videos, tmp_path):
    store, machine_a, machine_b = storage(s3), tmp_path / "a", tmp_path / "b"
    folder = machine_a / "shards" / "milk" / "x-0.05mb"
    every_frame = FrameSettings(every=1, size=(32, 56), dedupe=False)
    manifest = write_video_shards(sample_videos / "milk.mkv", "milk", every_frame, 0.05, folder)
    files = [shard["file"] for shard in manifest["shards"]]
    assert len(files) > 1
    index = {"videos": [{"manifest": "shards/milk/x-0.05mb/manifest.json",
                         "shards": [f"shards/milk/x-0.05mb/{name}" for name in files]}]}  # fmt: skip
    (machine_a / DATASET).write_text(json.dumps(index))
    publish_shards(store, machine_a, folder)
    publish_file(store, machine_a, machine_a / DATASET)
    published = {key.rpartition("/")[2] for key in s3.keys("data/shards/milk/x-0.05mb/")}
    assert published == {*files, "manifest.json"}

    assert stage_dataset(store, machine_b) == len(files)
    staged = machine_b / "shards" / "milk" / "x-0.05mb"
    assert verify_manifest(staged / "manifest.json")
    assert all((staged / name).read_bytes() == (folder / name).read_bytes() for name in files)
    assert (machine_b / DATASET).read_bytes() == (machine_a / DATASET).read_bytes()
    assert not [p for p in machine_b.rglob(".*")]  # no temp file left behind

    assert stage_dataset(store, machine_b) == 0  # all there with the right sha256
    damaged = staged / files[0]
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the sha256 tells
    damaged.write_bytes(bytes(data))
    assert stage_dataset(store, machine_b) == 1 and verify_manifest(staged / "manifest.json")

    # A shard changed in the bucket no longer matches its manifest: refused, not trained on.
    s3.write(f"data/shards/milk/x-0.05mb/{files[1]}", bytes(data))
    (staged / files[1]).unlink()
    with pytest.raises(StorageError, match=f"s3://{s3.name}/data/shards/milk/x-0.05mb/{files[1]} does not match"):
        stage_dataset(store, machine_b)
    assert not (staged / files[1]).exists() and not [p for p in machine_b.rglob(".*")]


def test_a_bad_bucket_or_endpoint_fails_in_one_line_naming_the_url(prefect_server, s3, sample_videos, tmp_path):
    missing = StorageSettings(url="s3://no-such-bucket/data", endpoint_url=s3.endpoint_url)
    with pytest.raises(StorageError) as error:
        open_bucket(missing)
    assert "s3://no-such-bucket/data: no bucket 'no-such-bucket'" in str(error.value)
    assert "\n" not in str(error.value)

    unreachable = StorageSettings(url=s3.url("data"), endpoint_url="http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(StorageError) as error:
        open_bucket(unreachable)
    assert s3.url("data") in str(error.value) and "\n" not in str(error.value)

    # Through the flow: refused before anything is downloaded or written.
    source = str(shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv"))
    state = ingest([source], ingest_settings(tmp_path / "data", missing), return_state=True)
    assert state.is_failed()
    with pytest.raises(StorageError, match="s3://no-such-bucket/data"):
        state.result()
    assert not (tmp_path / "data" / "shards").exists()


def test_credentials_from_a_prefect_secret_block(prefect_server, s3, monkeypatch):
    from prefect.blocks.system import Secret

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    named = StorageSettings(url=s3.url("data"), endpoint_url=s3.endpoint_url, credentials_block="no-such-block")
    with pytest.raises(StorageError, match=f"storage {s3.url('data')}: no Prefect Secret block named 'no-such-block'"):
        open_bucket(named)

    Secret(value={"key": "from-block", "secret": "block-secret"}).save("s3-keys", overwrite=True)
    open_bucket(named.model_copy(update={"credentials_block": "s3-keys"})).fs.pipe(f"{s3.name}/data/x", b"x")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-block" and s3.read("data/x") == b"x"


def test_second_machine_gets_everything_cached_and_downloads_nothing(
    prefect_server, s3, video_server, sample_videos, tmp_path
):
    urls = [video_server.serve("/milk.mkv", sample_videos / "milk.mkv", "video/x-matroska"),
            video_server.serve("/book.mkv", sample_videos / "book.mkv", "video/x-matroska")]  # fmt: skip
    store = storage(s3)

    first = run_ingest(urls, ingest_settings(tmp_path / "a", store))
    assert set(first.values()) == {"Completed"} and len(first) == 4, first
    requests = (video_server.count("/milk.mkv"), video_server.count("/book.mkv"))
    published, dataset = s3.keys("data/"), s3.read(f"data/{DATASET}")
    assert any(key.startswith("data/.prefect/cache-keys/") for key in published)
    assert any(key.startswith("data/.prefect/results/") for key in published)
    index = json.loads(dataset)
    for video in index["videos"]:
        assert f"data/{video['manifest']}" in published and all(f"data/{s}" in published for s in video["shards"])
    shutil.rmtree(tmp_path / "a")  # machine A is gone

    second = run_ingest(urls, ingest_settings(tmp_path / "b", store))
    assert second == {name: "Cached" for name in first}, second
    assert (video_server.count("/milk.mkv"), video_server.count("/book.mkv")) == requests  # downloaded nothing
    assert s3.read(f"data/{DATASET}") == dataset
    assert (tmp_path / "b" / DATASET).read_bytes() == dataset
    assert not (tmp_path / "b" / ".prefect" / "cache-keys").exists()  # the records are in the bucket
    assert not list(downloads_dir(tmp_path / "b").glob("*"))


def test_a_deleted_download_is_not_fetched_again_while_its_shards_are_valid(
    prefect_server, video_server, sample_videos, tmp_path
):
    url = video_server.serve("/milk.mkv", sample_videos / "milk.mkv", "video/x-matroska")
    config = ingest_settings(tmp_path / "data")
    run_ingest([url], config)
    shutil.rmtree(downloads_dir(config.data_dir))

    again = run_ingest([url], config)
    assert set(again.values()) == {"Cached"} and video_server.count("/milk.mkv") == 1, again

    # Without valid shards the video is needed again: fetched, and the shards made anew.
    shutil.rmtree(config.data_dir / "shards")
    third = run_ingest([url], config)
    assert set(third.values()) == {"Completed"} and video_server.count("/milk.mkv") == 2, third


def tiny(data_dir: Path, run_dir: Path, store: StorageSettings, steps: int) -> TrainSettings:
    return TrainSettings(
        data_dir=data_dir, run_dir=run_dir, storage=store, steps=steps, batch_size=8, g_filters=32, d_filters=16,
        sample_every=2, checkpoint_every=2, keep_checkpoints=1, shuffle_buffer=32, eval_every=0, walk_seconds=0,
    )  # fmt: skip


def test_training_on_fresh_machines_stages_the_data_and_mirrors_the_run(prefect_server, s3, sample_videos, tmp_path):
    store = storage(s3)
    sources = [str(shutil.copy(sample_videos / name, tmp_path / name)) for name in ("milk.mkv", "book.mkv")]
    run_ingest(sources, ingest_settings(tmp_path / "ingest", store))
    shutil.rmtree(tmp_path / "ingest")

    machine_c = tmp_path / "c"
    assert train(tiny(machine_c / "data", machine_c / "run", store, steps=4)) == str(machine_c / "run")
    index = json.loads((machine_c / "data" / DATASET).read_text())
    for video in index["videos"]:
        assert verify_manifest(machine_c / "data" / video["manifest"])
    remote = s3.keys("data/runs/run/")
    for name in ("config.json", "history.parquet", "loss.png", "samples/latest.png", "checkpoints/checkpoint",
                 "checkpoints/ckpt-4.index"):  # fmt: skip
        assert f"data/runs/run/{name}" in remote, sorted(remote)
    assert "data/runs/run/checkpoints/ckpt-2.index" not in remote  # rotated out locally, so deleted remotely
    assert not any("/." in key for key in remote)  # neither the run lock nor temp files
    local = machine_c / "run" / "checkpoints" / "ckpt-4.index"
    assert remote["data/runs/run/checkpoints/ckpt-4.index"] == local.stat().st_size
    shutil.rmtree(machine_c)

    # Machine D resumes the run from the bucket alone.
    machine_d = tmp_path / "d"
    train(tiny(machine_d / "data", machine_d / "run", store, steps=6))
    history = pd.read_parquet(machine_d / "run" / "history.parquet")
    assert history["step"].tolist() == [1, 2, 3, 4, 5, 6]  # steps 1-4 came from the bucket
    assert "data/runs/run/checkpoints/ckpt-6.index" in s3.keys("data/runs/run/")
