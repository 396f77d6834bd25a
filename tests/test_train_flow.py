"""Training on shards from the real ingest of the sample videos, through a real Prefect server."""

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

from flows.artifacts import TrainingArtifacts, run_key
from flows.ingest import ingest
from flows.progress import TrainingProgress
from flows.train import train
import gan.loop
from gan.history import COLUMNS
from gan.index import DatasetError, Holdout, load_index
from gan.loop import NonFiniteLoss, Status, generate, run_training
from gan.run import _LEGACY_MODEL_SETTINGS, RunDirError
from gan.step import DCGAN
from synthwave.settings import FrameSettings, IngestSettings, TrainSettings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(prefect_server, tmp_path_factory) -> Path:
    """The sample videos ingested at 32x56 by the real ingest flow."""
    from tests.loopback import SAMPLE_VIDEOS

    if not (SAMPLE_VIDEOS / "bottle-detection.mp4").is_file():
        pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS}")
    data = tmp_path_factory.mktemp("data")
    sources = [str(SAMPLE_VIDEOS / name) for name in ("bottle-detection.mp4", "milk.mkv", "book.mkv")]
    ingest(sources, IngestSettings(data_dir=data, frames=FrameSettings(every=10, size=(32, 56), dedupe=False)))
    return data


def tiny(data_dir: Path, run_dir: Path, **overrides) -> TrainSettings:
    values = dict(
        data_dir=data_dir, run_dir=run_dir, steps=6, batch_size=16, g_filters=32, d_filters=16,
        sample_every=3, checkpoint_every=3, shuffle_buffer=64,
        ema_decay=None,  # 6 steps: samples from an EMA of 0.99 would still be the initial generator's
    )
    return TrainSettings(**{**values, **overrides})


def artifacts_of(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_train_flow_writes_every_output_and_artifact(data_dir, tmp_path):
    settings = tiny(data_dir, tmp_path / "run", g_lr=5e-3, d_lr=5e-3, lr_decay=0.0)  # visible change in 6 steps
    state = train(settings, return_state=True)
    assert state.is_completed(), state.message
    run = tmp_path / "run"

    history = pd.read_parquet(run / "history.parquet")
    assert list(history.columns) == list(COLUMNS)
    assert history["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.isfinite(history[["g_loss", "d_loss", "d_real", "d_fake"]].to_numpy()).all()
    assert ((history["d_real"] > 0) & (history["d_real"] < 1)).all()

    first = np.asarray(Image.open(run / "samples" / "grid-00000000.png"), np.int16)
    last = np.asarray(Image.open(run / "samples" / "grid-00000006.png"), np.int16)
    assert first.shape == last.shape and np.abs(first - last).max() > 10  # six updates changed the samples
    assert (run / "loss.png").stat().st_size > 0
    # Evaluated at the last step (eval_every's default > steps) on the held-out frames ingest recorded.
    assert json.loads((data_dir / "dataset.json").read_text())["holdout"] == {"rule": Holdout.rule, "per_mille": 100}
    assert history.dropna(subset=["swd_mean"])["step"].tolist() == [6] and (run / "quality.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-3.index", "ckpt-6.index"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    artifacts = artifacts_of(state.state_details.flow_run_id)
    by_type = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    assert {"image", "table", "markdown", "progress"} <= set(by_type)
    assert all(a.data.startswith("data:image/") for a in by_type["image"])  # loads in a browser with no server
    assert by_type["progress"][0].data == 100.0
    versions = [json.loads(a.data) for a in by_type["table"] if a.key.endswith("-losses")]  # one a flush
    losses = max(versions, key=lambda rows: rows[-1]["step"])
    assert list(losses[-1]) == ["step", "epoch", "g_loss", "d_loss", "d_real", "d_fake", "images_per_s"]
    # Rounded as read: no float32 noise such as 0.7828999757766724.
    assert losses[-1]["step"] == 6 and all(len(repr(value)) <= 12 for value in losses[-1].values()), losses[-1]
    summary = next(a for a in by_type["markdown"] if a.key.endswith("-summary"))
    assert "history.parquet" in summary.data and "ckpt-6" in summary.data
    # One key per kind, a version per update: grids at steps 0, 3, 6; plots and tables at 3 and 6.
    key = run_key(settings)
    assert Counter(a.key for a in artifacts if a.key) == {
        f"{key}-samples": 3, f"{key}-loss-plot": 2, f"{key}-losses": 2, f"{key}-quality-plot": 1,
        f"{key}-quality": 1, f"{key}-summary": 1, f"{key}-walk": 1, f"{key}-walk-frames": 1,
    }  # fmt: skip

    # The phases are task runs of the flow run, in order: its graph in the UI shows them.
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    phases = sorted(tasks, key=lambda run: run.start_time)
    assert [run.task_key.split("-")[0] for run in phases] == ["stage_data", "train_model", "render_walk", "publish"]
    assert all(run.state.is_completed() for run in phases)
    names = [run.name.rsplit("-", 1)[0] for run in phases]
    assert names == ["stage-data", "train", "render-walk", "publish"], names



def test_a_retried_run_runs_its_phases_again_and_resumes(data_dir, tmp_path, monkeypatch):
    """A flow run retried (the UI's Retry reruns the same flow run; here Prefect's flow retries) runs
    every phase again as new task runs, and training resumes from the failure's checkpoint."""
    report, failed = TrainingArtifacts.__call__, []

    def lost_after_step_3(self, progress):  # fault injection: after checkpoint 3, once
        report(self, progress)
        if progress.step == 3 and not failed:
            failed.append(progress.step)
            raise RuntimeError("worker lost")

    monkeypatch.setattr(TrainingArtifacts, "__call__", lost_after_step_3)
    state = train.with_options(retries=1)(tiny(data_dir, tmp_path / "run", walk_seconds=0), return_state=True)
    assert failed == [3] and state.is_completed(), state.message
    assert pd.read_parquet(tmp_path / "run" / "history.parquet")["step"].tolist() == [1, 2, 3, 4, 5, 6]
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    phases = [(run.name.rsplit("-", 1)[0], run.state.type.value) for run in sorted(tasks, key=lambda r: r.start_time)]
    assert phases == [("stage-data", "COMPLETED"), ("train", "FAILED"),
                      ("stage-data", "COMPLETED"), ("train", "COMPLETED"), ("publish", "COMPLETED")]  # fmt: skip


def test_artifact_keys_are_unique_per_run_directory(tmp_path):
    keys = {run_key(TrainSettings(run_dir=tmp_path / parent / "My Run")) for parent in ("a", "b")}
    assert len(keys) == 2 and all(re.fullmatch(r"my-run-[0-9a-f]{6}", key) for key in keys), keys
    assert run_key(TrainSettings(run_dir=tmp_path / "a" / "My Run")) in keys  # the same directory, the same key


def test_artifact_urls_use_the_configured_base(data_dir, tmp_path):
    settings = tiny(data_dir, tmp_path / "run", steps=3, artifact_base_url="http://127.0.0.1:9/runs/x/")
    state = train(settings, return_state=True)
    images = [a.data for a in artifacts_of(state.state_details.flow_run_id) if a.type == "image"]
    assert "http://127.0.0.1:9/runs/x/samples/grid-00000003.png" in images
    assert "http://127.0.0.1:9/runs/x/loss.png" in images


def test_resume_after_kill_9_gives_a_continuous_history(data_dir, tmp_path):
    """A real `kill -9` mid-run, then a rerun: exactly the requested steps, none twice or missing,
    with 4 steps per call (calls cut at every 5th step, where a checkpoint is due)."""
    from prefect.settings import PREFECT_API_URL

    run = tmp_path / "run"
    args = [sys.executable, "-m", "cli.main", "train", "--data-dir", str(data_dir), "--run-dir", str(run),
            "--steps", "30", "--batch-size", "16", "--g-filters", "32", "--d-filters", "16",
            "--sample-every", "5", "--checkpoint-every", "5", "--shuffle-buffer", "64", "--steps-per-call", "4"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list((run / "checkpoints").glob("ckpt-10.index")):
        assert process.poll() is None and time.monotonic() < deadline, "training never reached step 10"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = pd.read_parquet(run / "history.parquet")["step"].max()
    assert 10 <= killed_at < 30

    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)
    history = pd.read_parquet(run / "history.parquet")
    assert history["step"].tolist() == list(range(1, 31))
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index"))[-1] == "ckpt-30.index"


def test_same_seed_same_losses(data_dir, tmp_path):
    index = load_index(data_dir)
    losses = []
    for name in ("a", "b"):
        settings = tiny(data_dir, tmp_path / name, steps=4)
        final = run_training(settings, index.shards, index.shape, index.frames)
        losses.append(final.history[["g_loss", "d_loss"]].to_numpy())
    np.testing.assert_array_equal(losses[0], losses[1])


def test_generate_samples_the_latest_checkpoint(data_dir, tmp_path):
    index = load_index(data_dir)
    run_training(tiny(data_dir, tmp_path / "run", steps=3), index.shards, index.shape, index.frames)
    images = generate(tmp_path / "run", count=5, seed=3)
    assert images.shape == (5, 32, 56, 3) and images.min() >= -1 and images.max() <= 1
    np.testing.assert_array_equal(images, generate(tmp_path / "run", count=5, seed=3))


def test_a_run_dir_from_before_a_model_setting_restores(data_dir, tmp_path):
    """A config.json written before a model setting existed lacks it: the missing key means
    the value those runs were made with, so generate() and a resume still work."""
    index = load_index(data_dir)
    old = tiny(data_dir, tmp_path / "old", steps=1)
    run_training(old, index.shards, index.shape, index.frames)
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in _LEGACY_MODEL_SETTINGS:
        del config["model_settings"][key]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    images = generate(tmp_path / "old", count=2)
    run_training(old.updated(steps=2), index.shards, index.shape, index.frames)  # not refused
    assert images.shape == (2, 32, 56, 3) and not np.array_equal(images, generate(tmp_path / "old", count=2))


def test_clear_errors(data_dir, tmp_path):
    with pytest.raises(DatasetError, match="dataset.json not found"):
        load_index(tmp_path / "nothing")
    index = load_index(data_dir)
    run_training(tiny(data_dir, tmp_path / "run", steps=1), index.shards, index.shape, index.frames)
    with pytest.raises(RunDirError, match="use another --run-dir"):
        run_training(tiny(data_dir, tmp_path / "run", steps=2, g_filters=64), index.shards, index.shape, index.frames)

    mixed = tmp_path / "mixed"
    shutil.copytree(data_dir, mixed)  # shard paths stay inside the data dir
    dataset = json.loads((data_dir / "dataset.json").read_text())
    dataset["videos"][0]["shape"] = [64, 112, 3]
    (mixed / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(DatasetError, match="mixes image sizes.*--size"):
        load_index(mixed)


def test_a_checkpoint_that_does_not_restore_is_one_clear_error(data_dir, tmp_path):
    """A run dir whose checkpoint no longer fits the model (another version wrote it) or is
    damaged: one line naming the checkpoint and what to do, and the files stay as they were."""
    index = load_index(data_dir)
    settings = tiny(data_dir, tmp_path / "run", steps=3)
    run_training(settings, index.shards, index.shape, index.frames)
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    files = {path: path.read_bytes() for path in (tmp_path / "run" / "checkpoints").iterdir()}
    other = DCGAN(settings.updated(g_filters=64), index.shape)  # G's kernels of another shape
    other.checkpoint().write(latest)
    more = settings.updated(steps=4)
    with pytest.raises(RunDirError, match=r"^checkpoint .*ckpt-\d+ does not restore into this model .*another --run-dir$"):
        run_training(more, index.shards, index.shape, index.frames)
    for path, content in files.items():
        path.write_bytes(content)
    data = next(path for path in files if ".data-" in path.name and path.name.startswith(Path(latest).name))
    data.write_bytes(files[data][: len(files[data]) // 2])  # a damaged file
    with pytest.raises(RunDirError, match="does not restore into this model"):
        run_training(more, index.shards, index.shape, index.frames)
    assert sorted((tmp_path / "run" / "checkpoints").iterdir()) == sorted(files)  # nothing removed or added


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    """Fault injection: a discriminator weight turns NaN after step 4, as a diverging run would."""
    class Diverging(DCGAN):
        def _train_step(self, real):
            kernel = self.discriminator.trainable_weights[0]
            poison = tf.where(self.step == 4, float("nan"), 0.0)  # in the graph: also inside a call of K steps
            kernel.assign_add(tf.fill(kernel.shape, poison))
            return super()._train_step(real)

    monkeypatch.setattr(gan.loop, "DCGAN", Diverging)
    index = load_index(data_dir)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"step 5 .*ckpt-3"):
        run_training(tiny(data_dir, run, steps=10), index.shards, index.shape, index.frames)
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-3.index"]
    assert pd.read_parquet(run / "history.parquet")["step"].max() == 3


def test_progress_lines_at_a_steady_cadence_and_a_resume_line(caplog):
    """Without a terminal: "resumed from step N", then one line every LOG_EVERY_S seconds (15) and
    at the end, with the losses, images/s, the input share and the time left."""
    now = [0.0]
    logger = logging.getLogger("test-progress")
    with caplog.at_level(logging.INFO, logger="test-progress"):
        with TrainingProgress(logger, terminal=False, clock=lambda: now[0]) as display:
            for step in range(101, 201):
                now[0] += 1.0  # a step a second
                display(Status(step, 200, 100, 0.5, 1.25, 64.0, 0.125))
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "resumed from step 100 of 200"
    assert lines[1] == "step 101/200: g_loss 0.500, d_loss 1.250, 64 images/s, 12% of the time waiting for input"
    assert lines[2] == ("step 116/200: g_loss 0.500, d_loss 1.250, 64 images/s, 12% of the time waiting for input, "
                        "1 min 24 s left")  # fmt: skip
    assert len(lines) == 2 + 6 + 1 and lines[-1].startswith("step 200/200: ") and lines[-1].endswith("input")


def test_progress_bar_on_a_terminal():
    output = io.StringIO()
    with TrainingProgress(logging.getLogger("test-progress"), terminal=True) as display:
        display.bar.console.file = output
        display(Status(3, 10, 0, 0.5, 1.25, 64.0, 0.5))
        display.bar.refresh()
    assert "3/10" in output.getvalue() and "64 img/s" in output.getvalue() and "input 50%" in output.getvalue()
