"""Training resumes past damage: a damaged history, a missing or damaged newest checkpoint,
a full disk during a checkpoint; and a damaged shard is named before training starts. A run
directory written before the settings had groups resumes too."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from flows.ingest import ingest
from gan.checkpoints import CheckpointWriteError
from gan.index import DatasetError, load_index
from gan.loop import run_training
from cli.main import main
from synthwave.settings import FrameSettings, IngestSettings, TrainSettings
from tests.reliability.helpers import gradient, make_video


@pytest.fixture(scope="module")
def data(prefect_server, tmp_path_factory) -> Path:
    """40 frames of 32x56, ingested by the real flow."""
    folder = tmp_path_factory.mktemp("resume")
    video = make_video(folder / "clip.avi", [gradient(64, 112, 5 * i) for i in range(40)])
    ingest([str(video)], IngestSettings(data_dir=folder / "data", frames=FrameSettings(every=1, size=(32, 56))))
    return folder / "data"


def tiny(data: Path, run: Path, steps: int) -> TrainSettings:
    return TrainSettings(
        data_dir=data, run_dir=run, steps=steps, batch_size=8, g_filters=16, d_filters=8, sample_every=3,
        checkpoint_every=3, shuffle_buffer=16, eval_every=0, ema_decay=None, walk_seconds=0,
    )  # fmt: skip


def train(settings: TrainSettings):
    index = load_index(settings.data_dir)
    return run_training(settings, index.shards, index.shape, index.frames)


def steps_in(run: Path) -> list[int]:
    return pd.read_parquet(run / "history.parquet")["step"].tolist()


def test_a_damaged_history_is_set_aside_and_the_run_resumes(data, tmp_path, caplog):
    run = tmp_path / "run"
    train(tiny(data, run, steps=6))
    history = run / "history.parquet"
    history.write_bytes(history.read_bytes()[: history.stat().st_size // 2])

    with caplog.at_level(logging.WARNING):
        train(tiny(data, run, steps=9))

    assert steps_in(run) == [7, 8, 9]  # the rows before the checkpoint are what was lost
    assert (run / "history.parquet.damaged").is_file()
    warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warnings) == 1 and str(history) in warnings[0], warnings


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_bad_newest_checkpoint_resumes_from_the_newest_good_one(data, tmp_path, caplog, damage):
    run = tmp_path / "run"
    train(tiny(data, run, steps=9))
    (newest,) = (run / "checkpoints").glob("ckpt-9.data-*")
    if damage == "missing":
        newest.unlink()
    else:
        newest.write_bytes(newest.read_bytes()[:100])

    with caplog.at_level(logging.WARNING):
        final = train(tiny(data, run, steps=12))

    assert final.step == 12 and steps_in(run) == list(range(1, 13))  # cut to step 6, then on: no gap, no repeat
    used = [r.getMessage() for r in caplog.records if "resuming from" in r.getMessage()]
    assert len(used) == 1 and "ckpt-6" in used[0] and "ckpt-9" in used[0], used
    assert (run / "checkpoints" / "ckpt-12.index").is_file()


def test_a_damaged_shard_is_named_before_training(data, tmp_path, capsys):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shard = sorted((copy / "shards").rglob("*.tfrecord"))[0]
    content = bytearray(shard.read_bytes())
    content[len(content) // 2] ^= 0xFF  # same size: only the hash can tell
    shard.write_bytes(bytes(content))
    run = tmp_path / "run"

    code = main(["train", "--data-dir", str(copy), "--run-dir", str(run), "--steps", "1", "--eval-every", "0"])

    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: shard ") and "\n" not in err, err
    assert str(shard) in err and "damaged" in err and "synthwave ingest" in err, err
    assert not run.exists()


def test_shard_paths_must_stay_inside_the_data_dir(data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    dataset = json.loads((copy / "dataset.json").read_text())
    dataset["videos"][0]["shards"] = ["../../../../../../etc/passwd"]
    (copy / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(DatasetError, match="outside"):
        load_index(copy)


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_save(
    data, small_disk, tmp_path, monkeypatch
):
    run = (small_disk or tmp_path) / "run"
    train(tiny(data, run, steps=3))  # ckpt-3: about 1 MB
    filler = (small_disk or tmp_path) / "filler"
    if small_disk is not None:  # leave room for the grid, history and plot of step 6, not its checkpoint
        filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 400_000))
    else:  # no tmpfs: the same error at the same place, injected, with the partial folder TF leaves
        def full(self, checkpoint_number=None, **kwargs):  # noqa: ANN001, ANN202
            (Path(self.directory) / f"ckpt-{checkpoint_number}_temp").mkdir()
            raise tf.errors.ResourceExhaustedError(None, None, "write: No space left on device")

        monkeypatch.setattr(tf.train.CheckpointManager, "save", full)

    with pytest.raises(CheckpointWriteError) as caught:
        train(tiny(data, run, steps=6))

    message = str(caught.value)
    assert "checkpoint 6" in message and "free space" in message and "ckpt-3" in message, message
    assert "\n" not in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index",
    ]  # fmt: skip

    monkeypatch.undo()
    filler.unlink(missing_ok=True)
    (run / "checkpoints" / "ckpt-5_temp_0123").mkdir()  # as a kill -9 mid-save leaves: swept on resume
    assert train(tiny(data, run, steps=6)).step == 6
    assert not list((run / "checkpoints").glob("*_temp*")) and steps_in(run) == list(range(1, 7))


# A 2-step run directory written by the code before TrainSettings had groups (commit fe26d9a,
# flat settings): its config.json, checkpoint, history and the flat settings it was made with.
OLD_RUN = Path(__file__).resolve().parents[1] / "data" / "run-before-setting-groups"
BOOK = Path(__file__).resolve().parents[2].parent / "shared" / "videos" / "book.mkv"


def test_a_run_directory_from_before_the_setting_groups_resumes(tmp_path, caplog):
    """Its config.json is the model group's dump, its checkpoint restores whole, and its flat
    settings (as an earlier prefect.yaml or JSON config gives them) continue the run."""
    if not BOOK.is_file():
        pytest.skip(f"sample clip {BOOK} is absent")
    from gan.loop import restore
    from tasks.shards import write_video_shards

    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    config = (run / "config.json").read_bytes()
    flat = json.loads((run / "settings.json").read_text())
    settings = TrainSettings.model_validate({**flat, "run_dir": run, "steps": 4})
    assert json.loads(config)["model_settings"] == settings.model.model_dump(mode="json")

    # Every weight of the restored EMA generator and discriminator is one of the checkpoint's, as saved.
    saved = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-2"))
    tensors = [np.asarray(saved.get_tensor(name)) for name, _ in tf.train.list_variables(str(run / "checkpoints" / "ckpt-2"))]
    gan = restore(run)
    assert int(gan.step.numpy()) == 2
    for weight in gan.ema_generator.weights + gan.discriminator.weights:
        assert any(t.shape == weight.shape and np.array_equal(t, weight.numpy()) for t in tensors), weight.path

    shards = tmp_path / "shards"
    frames = FrameSettings(every=1, size=(32, 56), dedupe=False)
    manifest = write_video_shards(BOOK, "book", frames, 0.1, shards)
    with caplog.at_level(logging.WARNING):
        final = run_training(settings, [str(shards / s["file"]) for s in manifest["shards"]], (32, 56, 3), 109)
    assert final.step == 4 and steps_in(run) == [1, 2, 3, 4]  # steps 1-2 from before, 3-4 resumed
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]  # the old checkpoint restored
    assert (run / "config.json").read_bytes() == config
