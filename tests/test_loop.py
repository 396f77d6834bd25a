"""gan.loop.run_training with several steps per call, uint8 batches, the frame cache, and the GPU
configuration (float16 with loss scaling, XLA, K > 1) run on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import gan.loop
from gan.loop import Status, call_length, run_training
from gan.step import DCGAN, GPU_STEPS_PER_CALL
from synthwave.settings import FrameSettings, TrainSettings
from tasks.shards import write_video_shards

BOOK = Path(__file__).resolve().parents[1].parent / "shared" / "videos" / "book.mkv"
SHAPE = (32, 56, 3)
TINY = dict(batch_size=8, g_filters=16, d_filters=8, max_blocks=2, shuffle_buffer=32, ema_decay=None,
            walk_seconds=0, eval_frames=16, lr_decay=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    """book.mkv (109 frames) at 32x56, raw sampling (curation takes its one signer for one image)."""
    if not BOOK.is_file():
        pytest.skip(f"sample clip {BOOK} is absent")
    out = tmp_path_factory.mktemp("book")
    manifest = write_video_shards(BOOK, "book", FrameSettings(every=1, size=SHAPE[:2], dedupe=False), 0.1, out)
    return [str(out / shard["file"]) for shard in manifest["shards"]]


@pytest.fixture
def recorded(monkeypatch) -> dict:
    """What the loop hands the model: the steps of each call, the dtype of the batches, the models."""
    seen = {"calls": [], "dtypes": set(), "models": []}

    class Recording(DCGAN):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["models"].append(self)
            steps = self.train_steps

            def counted(batches, count):
                seen["calls"].append(int(count))
                return steps(batches, count)

            self.train_steps = counted

        def _train_step(self, real):
            seen["dtypes"].add(real.dtype)  # at trace time: the batch as it reaches the step
            return super()._train_step(real)

    monkeypatch.setattr(gan.loop, "DCGAN", Recording)
    return seen


def test_a_call_ends_at_the_next_sample_evaluation_or_checkpoint() -> None:
    settings = TrainSettings(steps=10, sample_every=4, checkpoint_every=5, eval_every=6)
    schedule, evaluation = settings.schedule, settings.evaluation
    assert [call_length(schedule, evaluation, step, 3) for step in (0, 3, 4, 5, 6, 8, 9)] == [3, 1, 1, 1, 2, 2, 1]
    assert call_length(schedule, evaluation.model_copy(update={"eval_every": 0}), 5, 8) == 3
    assert call_length(schedule, evaluation, 0, 1) == 1


@pytest.mark.parametrize("precision", ["off", "on"])
def test_several_steps_per_call_train_exactly_as_one(shards, tmp_path, recorded, precision) -> None:
    """K = 3: every step once in the history, samples, evaluations and checkpoints at their steps,
    the same losses as one step per call, and uint8 batches reaching the step."""
    histories = {}
    for k in (1, 3):
        settings = TrainSettings(**TINY, run_dir=tmp_path / f"k{k}", steps=10, sample_every=3, checkpoint_every=5,
                                 eval_every=4, steps_per_call=k, mixed_precision=precision)  # fmt: skip
        recorded["calls"].clear()
        run_training(settings, shards, SHAPE, 109)
        histories[k] = pd.read_parquet(tmp_path / f"k{k}" / "history.parquet")
        run = tmp_path / f"k{k}"
        assert sorted(p.name for p in (run / "samples").glob("grid-*.png")) == [
            f"grid-{step:08d}.png" for step in (0, 3, 6, 9, 10)
        ]
        assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == ["ckpt-10.index", "ckpt-5.index"]
        tensorboard = EventAccumulator(str(run / "tensorboard"))
        tensorboard.Reload()
        assert [event.step for event in tensorboard.Scalars("d_loss")] == list(range(1, 11))
    assert recorded["calls"] == [3, 1, 1, 1, 2, 1, 1]  # K = 3's calls, cut at steps 3, 4, 5, 6, 8, 9 and 10
    assert recorded["dtypes"] == {tf.uint8}
    many, one = histories[3], histories[1]
    assert many["step"].tolist() == list(range(1, 11))
    assert many.dropna(subset=["swd_mean"])["step"].tolist() == [4, 8, 10]
    losses = ["g_loss", "d_loss", "d_real", "d_fake"]
    np.testing.assert_array_equal(many[losses].to_numpy(), one[losses].to_numpy())
    np.testing.assert_array_equal(many["swd_mean"].to_numpy(), one["swd_mean"].to_numpy())
    timings = many[["input_s", "compute_s"]].to_numpy()
    assert (timings >= 0).all() and (many["compute_s"] > 0).all()


def test_status_reports_every_call_and_where_a_resumed_run_started(shards, tmp_path) -> None:
    statuses: list[Status] = []
    settings = TrainSettings(**TINY, run_dir=tmp_path / "run", steps=4, checkpoint_every=2, sample_every=2,
                             eval_every=0, steps_per_call=2)  # fmt: skip
    run_training(settings, shards, SHAPE, 109, on_status=statuses.append)
    run_training(settings.model_copy(update={"steps": 6}), shards, SHAPE, 109, on_status=statuses.append)
    assert [(s.step, s.total, s.start) for s in statuses] == [(2, 4, 0), (4, 4, 0), (6, 6, 4)]
    assert all(np.isfinite([s.g_loss, s.d_loss]).all() and s.images_per_s > 0 for s in statuses)
    assert all(0 <= s.input_share < 1 for s in statuses)


def test_gpu_configuration_runs_on_cpu(shards, tmp_path, recorded, monkeypatch) -> None:
    """What a GPU worker runs by default: float16 with loss scaling, XLA and GPU_STEPS_PER_CALL
    steps per call, then a resume; on the CPU, which runs XLA and float16 too."""
    physical = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["pretend GPU"] if kind == "GPU" else physical(kind))  # fmt: skip
    settings = TrainSettings(**TINY, run_dir=tmp_path / "run", steps=5, checkpoint_every=4, sample_every=100,
                             eval_every=0, mixed_precision="auto", jit_compile="auto")  # fmt: skip
    run_training(settings, shards, SHAPE, 109)
    run_training(settings.model_copy(update={"steps": 7}), shards, SHAPE, 109)  # resumes from step 5
    for model in recorded["models"]:
        assert model.dtype_policy == "mixed_float16" and model.jit_compile
        assert model.steps_per_call == GPU_STEPS_PER_CALL > 4
    assert recorded["calls"] == [4, 1, 2]  # cut at the checkpoints, then the resumed run's two steps
    assert recorded["dtypes"] == {tf.uint8}
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    assert history["step"].tolist() == list(range(1, 8))
    assert np.isfinite(history[["g_loss", "d_loss", "d_real", "d_fake"]].to_numpy()).all()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.index")) == [
        "ckpt-4.index", "ckpt-5.index", "ckpt-7.index"
    ]
