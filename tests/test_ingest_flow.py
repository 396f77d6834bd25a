"""The ingest flow on a real Prefect server, real videos and a real HTTP server on loopback."""

import json
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

from flows.ingest import IngestFailed, ingest
from synthwave.settings import DownloadSettings, FrameSettings, IngestSettings
from tasks.shards import verify_manifest


def settings(data_dir: Path, **download) -> IngestSettings:
    return IngestSettings(
        data_dir=data_dir,
        frames=FrameSettings(every=60, size=(32, 56), dedupe=False),  # book.mkv is one image to curation
        download=DownloadSettings(
            **{"retries": 2, "retry_delay_s": 0.05, "timeout_s": 10, "allowed_hosts": ["127.0.0.1"], **download}
        ),  # the loopback server is a private address: listed
        shard_mb=0.05,
    )


def task_states(flow_run_id) -> dict[str, str]:
    """Task run name -> final state name, read back from the Prefect API."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.state.name for run in runs}


def run(sources, config):
    state = ingest(sources, config, return_state=True)
    return state, state.state_details.flow_run_id


def test_failed_source_fails_alone_and_rerun_hits_cache(prefect_server, video_server, sample_videos, tmp_path):
    bottle = video_server.serve("/bottle.mp4", sample_videos / "bottle-detection.mp4")
    missing = video_server.url("/book.mkv")  # 404 until we publish it
    local = shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv")
    config = settings(tmp_path / "data")

    state, first_id = run([bottle, missing, str(local)], config)
    assert state.is_failed()
    with pytest.raises(IngestFailed, match=r"1 of 3 sources failed: .*book\.mkv.*404"):
        state.result()
    dataset = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert {video["source"] for video in dataset["videos"]} == {bottle, str(local)}
    assert dataset["failed"][0]["source"] == missing
    assert dataset["frames"] == 20 + 1  # every 60th of 1189 frames (bottle) and of 51 (milk)
    for video in dataset["videos"]:
        assert verify_manifest(tmp_path / "data" / video["manifest"])
    assert video_server.count("/book.mkv") == 1  # a 404 is not retried

    # The source becomes healthy; the rerun downloads only it.
    video_server.serve("/book.mkv", sample_videos / "book.mkv", content_type="video/x-matroska")
    state, second_id = run([bottle, missing, str(local)], config)
    assert state.is_completed()
    assert video_server.count("/bottle.mp4") == 1
    assert video_server.count("/book.mkv") == 2
    states = task_states(second_id)
    cached = {name for name, value in states.items() if value == "Cached"}
    assert len(cached) == 4, states  # download + shards of bottle and milk
    assert len(json.loads((tmp_path / "data" / "dataset.json").read_text())["videos"]) == 3


def test_transient_errors_are_retried(prefect_server, video_server, sample_videos, tmp_path):
    url = video_server.serve("/flaky.mkv", sample_videos / "milk.mkv", content_type="video/x-matroska")
    video_server.fail("/flaky.mkv", 500, times=2)
    state, _ = run([url], settings(tmp_path / "data"))
    assert state.is_completed()
    assert video_server.count("/flaky.mkv") == 3


def test_deleted_output_is_recomputed_not_returned(prefect_server, sample_videos, tmp_path):
    local = str(shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv"))
    config = settings(tmp_path / "data")
    run([local], config)
    dataset = json.loads((tmp_path / "data" / "dataset.json").read_text())
    shard = tmp_path / "data" / dataset["videos"][0]["shards"][0]
    shard.write_bytes(b"corrupted")
    state, flow_run_id = run([local], config)
    assert state.is_completed()
    assert verify_manifest(tmp_path / "data" / dataset["videos"][0]["manifest"])
    assert task_states(flow_run_id)[f"shards-milk-{dataset['videos'][0]['key'][5:11]}"] == "Completed"  # file-<digits>


def test_concurrent_runs_download_once(prefect_server, video_server, sample_videos, tmp_path):
    url = video_server.serve("/same.mp4", sample_videos / "bottle-detection.mp4")
    config = settings(tmp_path / "data")
    states = []
    threads = [threading.Thread(target=lambda: states.append(run([url], config)[0])) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(state.is_completed() for state in states)
    assert video_server.count("/same.mp4") == 1


def test_invalid_source_is_reported_by_name(prefect_server, tmp_path):
    state, _ = run(["ftp://example.invalid/x.mp4"], settings(tmp_path / "data"))
    assert state.is_failed()
    with pytest.raises(IngestFailed, match="ftp://example.invalid/x.mp4"):
        state.result()


def test_playlist_is_expanded_and_its_failure_named(prefect_server, sample_videos, tmp_path, monkeypatch, loopback_only):
    """YouTube is faked at its boundary only: the playlist listing yt-dlp would fetch."""
    import yt_dlp.extractor.youtube as youtube
    from yt_dlp.utils import ExtractorError

    def private(self, url):
        raise ExtractorError("This playlist is private.", expected=True)

    monkeypatch.setattr(youtube.YoutubeTabIE, "_real_extract", private)
    playlist = "https://www.youtube.com/playlist?list=PLsynthwave00001"
    local = str(shutil.copy(sample_videos / "milk.mkv", tmp_path / "milk.mkv"))
    state, _ = run([playlist, local], settings(tmp_path / "data", retries=0))
    with pytest.raises(IngestFailed, match=r"1 of 2 sources failed: https://www.youtube.com/playlist\?list=PLsynthwave00001: .*private"):
        state.result()
    assert len(json.loads((tmp_path / "data" / "dataset.json").read_text())["videos"]) == 1


def test_moved_data_folder_keeps_its_cache(prefect_server, video_server, sample_videos, tmp_path):
    """A data folder moved elsewhere (a bigger disk, another mount) is still a cache hit: nothing
    is downloaded again, and new frame settings cut their shards from the download it holds."""
    url = video_server.serve("/milk.mkv", sample_videos / "milk.mkv", content_type="video/x-matroska")
    state, _ = run([url], settings(tmp_path / "old"))
    assert state.is_completed()
    shutil.move(tmp_path / "old", tmp_path / "new")

    state, rerun_id = run([url], settings(tmp_path / "new"))
    assert state.is_completed(), state.message
    assert set(task_states(rerun_id).values()) == {"Cached"}
    dataset = json.loads((tmp_path / "new" / "dataset.json").read_text())
    assert [verify_manifest(tmp_path / "new" / video["manifest"]) for video in dataset["videos"]] == [True]

    other = settings(tmp_path / "new").model_copy(update={"frames": FrameSettings(every=30, size=(32, 56), dedupe=False)})
    state, third_id = run([url], other)
    assert state.is_completed(), state.message
    assert sorted(task_states(third_id).values()) == ["Cached", "Completed"]  # the download, new shards
    assert video_server.count("/milk.mkv") == 1


def test_curation_is_counted_a_blank_video_fails_alone_and_a_new_setting_recomputes_only_shards(
    prefect_server, sample_videos, tmp_path
):
    bottle = str(shutil.copy(sample_videos / "bottle-detection.mp4", tmp_path / "bottle.mp4"))
    black = tmp_path / "black.avi"
    writer = cv2.VideoWriter(str(black), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(20):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    curated = settings(tmp_path / "data").model_copy(update={"frames": FrameSettings(every=60, size=(32, 56))})

    state, first_id = run([bottle, str(black)], curated)
    with pytest.raises(IngestFailed, match=r"1 of 2 sources failed: .*black\.avi: all 1 sampled frames are blank"):
        state.result()
    dataset = json.loads((tmp_path / "data" / "dataset.json").read_text())
    [video] = dataset["videos"]
    counts = [video[key] for key in ("sampled", "frames", "dropped_duplicate", "dropped_blank")]
    assert counts[0] == 20 and counts[0] == sum(counts[1:]) and 1 < counts[1] < 20, counts  # every 60th of 1189
    assert [dataset[key] for key in ("sampled", "frames", "dropped_duplicate", "dropped_blank")] == counts
    with get_client(sync_client=True) as client:
        [table] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[first_id]), type={"any_": ["table"]}
            )
        )
    rows = {row["source"]: row for row in (json.loads(table.data) if isinstance(table.data, str) else table.data)}
    assert [rows[bottle][key] for key in ("sampled", "frames", "dropped_duplicate", "dropped_blank")] == counts
    assert rows[str(black)]["status"] == "failed"

    state, rerun_id = run([bottle], curated)
    assert state.is_completed() and set(task_states(rerun_id).values()) == {"Cached"}
    looser = curated.model_copy(update={"frames": curated.frames.model_copy(update={"dedupe_distance": 4})})
    state, third_id = run([bottle], looser)
    assert state.is_completed(), state.message
    states = task_states(third_id)
    name = f"bottle-{video['key'][5:11]}"  # the file's title, the key's first digits
    assert (states[f"download-{name}"], states[f"shards-{name}"]) == ("Cached", "Completed")
    again = json.loads((tmp_path / "data" / "dataset.json").read_text())["videos"][0]
    assert again["sampled"] == 20 and again["frames"] > counts[1]  # a stricter match drops fewer
