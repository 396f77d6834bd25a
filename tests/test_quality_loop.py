"""Held-out frames and SWD during training: the split, the reader, the history columns, old files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from synthwave import records
from gan.data import holdout_images, image_dataset, parse_record
from gan.history import COLUMNS
from gan.index import DatasetError, Holdout, load_index
from gan.loop import COLLAPSE_JUDGED_FROM, evaluate, run_training
from gan.metrics import ms_ssim_diversity
from synthwave.settings import FrameSettings, TrainSettings
from tasks.shards import write_video_shards

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "videos"


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    """book.mkv (109 frames) at 32x56, every frame: enough for a few held-out ones."""
    if not (VIDEOS / "book.mkv").is_file():
        pytest.skip(f"sample clip {VIDEOS / 'book.mkv'} is absent")
    out = tmp_path_factory.mktemp("book")
    manifest = write_video_shards(VIDEOS / "book.mkv", "book", FrameSettings(every=1, size=(32, 56), dedupe=False), 0.1, out)
    return [str(out / shard["file"]) for shard in manifest["shards"]]


def frame_ids(shard_paths: list[str], split: str) -> list[int]:
    """Frame indices the reader yields for a split (images and ids are read together)."""
    dataset = tf.data.TFRecordDataset(shard_paths)
    every = [int(parse_record(r)[records.FRAME_INDEX]) for r in dataset]
    images = image_dataset(shard_paths, 1, shuffle_buffer=0, repeat=False, drop_remainder=False, split=split)
    allowed = image_dataset(shard_paths, 1, shuffle_buffer=0, repeat=False, drop_remainder=False)
    by_bytes = {batch.numpy().tobytes(): index for batch, index in zip(allowed, every, strict=True)}
    return sorted(by_bytes[batch.numpy().tobytes()] for batch in images)


def test_held_out_frames_never_reach_training(shards):
    train_ids, held_ids = frame_ids(shards, "train"), frame_ids(shards, "holdout")
    assert set(train_ids).isdisjoint(held_ids) and len(train_ids) + len(held_ids) == 109
    assert 4 <= len(held_ids) <= 20  # ~10%, spread over the video rather than its tail
    assert min(held_ids) < 55 < max(held_ids)
    # Shuffled, repeated training batches hold none of them either.
    held = holdout_images(shards, Holdout(), 256)
    assert len(held) == len(held_ids)
    held_bytes = {image.tobytes() for image in np.round((held + 1) * 127.5).astype(np.uint8)}
    for cache in (False, True):  # cached, epochs 2 and 3 come from memory
        batches = image_dataset(shards, 16, shuffle_buffer=64, seed=1, split="train", cache=cache).take(20)
        assert not {image.tobytes() for batch in batches for image in batch.numpy()} & held_bytes
    assert frame_ids(shards, "holdout") == held_ids  # the same frames every time
    assert len(holdout_images(shards, Holdout(per_mille=0), 256)) == 0


def test_tiny_run_writes_swd_columns(shards, tmp_path):
    settings = TrainSettings(
        run_dir=tmp_path / "run", steps=4, batch_size=8, g_filters=16, d_filters=8, max_blocks=2,
        sample_every=2, checkpoint_every=2, shuffle_buffer=32, eval_every=2, eval_frames=16,
        loss="hinge", spectral_norm=True, augment="color,translation,cutout", ema_decay=0.9,
    )  # fmt: skip
    final = run_training(settings, shards, (32, 56, 3), 109)
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    assert list(history.columns) == list(COLUMNS)
    evaluated = history.dropna(subset=["swd_mean"])
    assert evaluated["step"].tolist() == [2, 4]
    # 32x56 has two pyramid levels (32 and 16 px): the coarser columns stay empty.
    assert (evaluated[["swd_l0", "swd_l1", "swd_mean"]] > 0).all().all()
    assert history[["swd_l2", "swd_l3"]].isna().all().all()
    assert ((evaluated["ms_ssim"] > 0) & (evaluated["ms_ssim"] <= 1)).all()
    assert (evaluated["ms_ssim_real"] == evaluated["ms_ssim_real"].iloc[0]).all()  # the same held-out frames
    assert 0 < evaluated["ms_ssim_real"].iloc[0] < 1
    # 4 steps are too few to judge: no mode-collapse verdict, whatever the samples look like.
    assert history["mode_collapse"].isna().all()
    assert final.evaluated and (tmp_path / "run" / "quality.png").stat().st_size > 0


def test_dataset_json_without_a_holdout_record_loads(tmp_path, shards):
    folder = Path(shards[0]).parent
    shutil.copytree(folder, tmp_path / "book")  # an index lists shards inside its data folder
    listed = [f"book/{Path(shard).name}" for shard in shards]
    video = {"key": "book", "shape": [32, 56, 3], "shards": listed, "manifest": "book/manifest.json"}
    dataset = {"frames": 109, "videos": [video]}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    assert load_index(tmp_path).holdout == Holdout()
    dataset["holdout"] = {"rule": Holdout.rule, "per_mille": 250}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    assert load_index(tmp_path).holdout == Holdout(per_mille=250)
    dataset["holdout"] = {"rule": "last 10% of each video", "per_mille": 100}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(DatasetError, match="holdout record.*rerun ingest"):
        load_index(tmp_path)


def test_mode_collapse_is_judged_from_the_step_set_for_it():
    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (16, 32, 56, 3)).astype(np.float32)
    collapsed = np.repeat(real[:1], 16, axis=0)  # one image sixteen times
    real_ms_ssim = ms_ssim_diversity(real)
    early = evaluate(collapsed, real, real_ms_ssim, COLLAPSE_JUDGED_FROM - 1)
    judged = evaluate(collapsed, real, real_ms_ssim, COLLAPSE_JUDGED_FROM)
    assert early["mode_collapse"] is None and judged["mode_collapse"] is True
    assert early["ms_ssim"] == judged["ms_ssim"] > 0.99 and judged["ms_ssim_real"] == real_ms_ssim
