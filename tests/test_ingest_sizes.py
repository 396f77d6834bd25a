"""What an ingest run tells its user, on a real Prefect server and the real sample clips: one
frame size by default, mixed sizes said at once by title with the setting to change, task
runs named after their videos, and one log line per video."""

import json
import re
import shutil
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId,
)  # fmt: skip
from prefect.logging.handlers import APILogWorker

from cli.main import main
from flows.ingest import ingest, summary
from gan.index import DatasetError, load_index
from synthwave.settings import DownloadSettings, FrameSettings, IngestSettings
from tasks.sources import parse_source, short_name
from tasks.steps import _download_run_name, run_label

BOTH_SPELLINGS = "--size HxW on the command line, settings -> frames -> size in the UI"


def run(sources: list[str], settings: IngestSettings):
    state = ingest(sources, settings, return_state=True)
    assert state.is_completed(), state.message
    return state.state_details.flow_run_id


def task_run_names(flow_run_id) -> set[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name for run in runs}


def log_lines(flow_run_id) -> list[str]:
    APILogWorker.drain_all(timeout=30)  # the logs go out in batches: send what is queued
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def sources_table(flow_run_id):
    with get_client(sync_client=True) as client:
        [table] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type={"any_": ["table"]}
            )
        )
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    return table.description, {row["title"]: row for row in rows}


def digits(key: str) -> str:
    return key.partition("-")[2][:6]


def test_the_default_ingest_of_a_16_9_and_a_4_3_video_is_one_trainable_size(prefect_server, sample_videos, tmp_path):
    bottle = str(shutil.copy(sample_videos / "bottle-detection.mp4", tmp_path / "bottle-detection.mp4"))  # 360x640
    milk = str(shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv"))  # 480x640
    data = tmp_path / "data"
    flow_run_id = run([bottle, milk], IngestSettings(data_dir=data))

    dataset = json.loads((data / "dataset.json").read_text())
    assert dataset["shape"] == [180, 320, 3]
    assert [video["shape"] for video in dataset["videos"]] == [[180, 320, 3]] * 2
    index = load_index(data)  # what training reads first: no DatasetError
    from gan.data import dataset_shape, image_dataset  # TensorFlow, for this test only

    assert index.shape == dataset_shape(index.shards) == (180, 320, 3)  # the records' own sizes
    batch = next(iter(image_dataset(index.shards, 2, shuffle_buffer=0)))
    assert tuple(batch.shape) == (2, 180, 320, 3)

    line = f"{data / 'dataset.json'}: 2 videos, {dataset['frames']} frames of 180x320"
    assert summary(data / "dataset.json") == (line, False)
    description, rows = sources_table(flow_run_id)
    assert "mixed" not in description and {row["size"] for row in rows.values()} == {"180x320"}

    keys = {Path(video["source"]).stem: video["key"] for video in dataset["videos"]}
    names = task_run_names(flow_run_id)
    assert names == {f"{step}-{slug}-{digits(keys[title])}" for step in ("download", "shards")
                     for title, slug in (("bottle-detection", "bottle-detection"), ("milk", "milk"))}  # fmt: skip

    lines = log_lines(flow_run_id)
    for video in dataset["videos"]:
        counts = rf"kept {video['frames']} of {video['sampled']} sampled frames \(\d+ near-duplicates, \d+ blank dropped\)"
        pattern = rf"{video['title']}: {counts}, 180x320"
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, lines)
    assert f"dataset: {line}" in lines


def test_mixed_sizes_are_said_at_once_by_title_with_the_setting_to_change(
    prefect_server, video_server, sample_videos, tmp_path, capsys
):
    bottle = str(shutil.copy(sample_videos / "bottle-detection.mp4", tmp_path / "bottle-detection.mp4"))  # 360x640
    shake = video_server.serve("/Milk%20Shake.mkv", sample_videos / "milk.mkv", "video/x-matroska")  # 480x640
    data = tmp_path / "data"
    download = DownloadSettings(retries=0, timeout_s=10, allowed_hosts=["127.0.0.1"])  # the loopback server: listed
    own_size = IngestSettings(data_dir=data, frames=FrameSettings(every=60, size=None, dedupe=False), download=download)
    flow_run_id = run([bottle, shake], own_size)

    sizes = "180x320: bottle-detection; 240x320: Milk Shake"
    expected = f"{data / 'dataset.json'}: 2 videos, 21 frames of mixed sizes, which training refuses ({sizes}): "
    line, mixed = summary(data / "dataset.json")
    assert mixed and line.startswith(expected) and line.endswith(BOTH_SPELLINGS), line
    assert f"dataset: {line}" in log_lines(flow_run_id)
    description, rows = sources_table(flow_run_id)
    assert line in description
    assert (rows["bottle-detection"]["size"], rows["Milk Shake"]["size"]) == ("180x320", "240x320")

    # The download's name before its title is known: the URL's last path part; then the title.
    keys = {video["title"]: video["key"] for video in json.loads((data / "dataset.json").read_text())["videos"]}
    name = f"milk-shake-{digits(keys['Milk Shake'])}"
    assert {f"download-{name}", f"shards-{name}"} <= task_run_names(flow_run_id)

    # The command line says it too (a cached rerun), as does training's first check.
    flags = ["--data-dir", str(data), "--every", "60", "--size", "none", "--no-dedupe", "--retries", "0",
             "--allowed-hosts", "127.0.0.1"]  # fmt: skip
    assert main(["ingest", bottle, shake, *flags]) == 0
    assert f"warning: dataset: {line}" in capsys.readouterr().out.splitlines()
    refusal = f"mixes image sizes ({sizes}): re-ingest with one size for all: {BOTH_SPELLINGS}"
    with pytest.raises(DatasetError, match=re.escape(refusal)):
        load_index(data)


def test_run_names_read_like_the_video():
    assert run_label("Big Buck Bunny (2008)", "file-d52ba94aedf8a923") == "big-buck-bunny-2008-d52ba9"
    assert run_label("Café del Mar — Live!", "url-0123456789abcdef") == "cafe-del-mar-live-012345"
    assert run_label("東京", "file-d52ba94aedf8a923") == "file-d52ba94aedf8a923"  # no Latin letter: the key
    assert short_name(parse_source("https://example.org/clips/Sun%20Set.mp4?x=1")) == "Sun Set"
    youtube = parse_source("https://youtu.be/dQw4w9WgXcQ")
    assert _download_run_name({"source": youtube}) == "download-yt-dQw4w9WgXcQ"  # the id, case kept
