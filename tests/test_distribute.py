"""Training on two replicas (MirroredStrategy over two logical CPUs) against one device.

TensorFlow fixes its logical devices when it first initialises them, so the distributed
part runs in a child process, `python -m tests.test_distribute OUT_DIR`, which splits the
CPU in two, trains one-device and two-replica DCGANs side by side and prints what it found
as one JSON line; the tests assert on it. One child serves every test: TensorFlow's start
and the tracing dominate. Dropout is 0 (its masks are drawn per replica: gan/step.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT.parent / "shared" / "videos" / "book.mkv"
SHAPE = (16, 16, 3)
# The recipe's parts that touch per-replica state: DiffAugment draws, the EMA, spectral norm's vector.
TINY = dict(batch_size=4, latent_dim=8, g_filters=32, d_filters=8, max_blocks=2, seed=3, mixed_precision="off",
            dropout=0.0, ema_decay=0.9, spectral_norm=True, augment="color,translation,cutout")  # fmt: skip
CLOSE = 1e-5  # float32 sums in another order; a per-replica BatchNorm alone differs by ~1e-2


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("distribute")
    child = subprocess.run(
        [sys.executable, "-m", "tests.test_distribute", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-4000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_two_replicas_step_as_one_device(found: dict) -> None:
    one_vs_two = found["one_vs_two"]
    assert one_vs_two["replicas"] == 2
    assert one_vs_two["loss"] < CLOSE and one_vs_two["weights"] < CLOSE and one_vs_two["samples"] < CLOSE
    assert one_vs_two["update"] > 100 * CLOSE  # the step moved the weights: the comparison means something
    assert one_vs_two["in_sync"]  # every replica holds the same copy of every variable
    assert found["step"] == 2


@pytest.mark.parametrize("direction", ["two_to_one", "one_to_two"])
def test_checkpoints_restore_across_replica_counts(found: dict, direction: str) -> None:
    resumed = found[direction]
    assert resumed["restored"] == 0.0  # every variable, optimiser slots and RNG states included
    # The resumed model continues as the run that wrote the checkpoint.
    assert resumed["loss"] < CLOSE and resumed["weights"] < CLOSE
    assert resumed["in_sync"]


def test_batch_not_divisible_by_replicas_and_xla_are_refused(found: dict) -> None:
    *batch, xla = found["refused"]
    assert len(batch) == 2 and not found["run_dir_created"]  # the loop refuses before writing anything
    for message in batch:
        assert message.startswith("batch_size 5 does not split over 2 replicas") and "--batch-size" in message
    assert xla.startswith("jit_compile on does not work across 2 replicas") and "--jit-compile" in xla
    assert all("\n" not in message for message in found["refused"])


def test_float16_replicas_skip_a_non_finite_step_together(found: dict) -> None:
    """Non-finite gradients on the second replica only: D's update is skipped on both."""
    skipped = found["float16"]
    assert skipped["d_scale"] == 2.0**14 and skipped["g_scale"] == 2.0**15  # G's gradients were finite
    assert skipped["d_unchanged"] and skipped["finite"] and skipped["in_sync"]


def test_training_loop_resumes_across_replica_counts(found: dict) -> None:
    """Two steps on two replicas in one call, resumed for a third on one device: one history, every step once."""
    if found["loop"] is None:
        pytest.skip(f"sample clip {BOOK} is absent")
    assert found["loop"]["steps"] == [1, 2, 3] and found["loop"]["finite"]
    assert found["loop"]["evaluated"] == [2, 3]  # every 2 steps and at the end: sampling replicated models too


def _loop(out: Path) -> dict | None:
    """gan.loop.run_training on a run dir, switching between two replicas and one device on resume."""
    import numpy as np
    import pandas as pd

    from gan.loop import run_training
    from synthwave.settings import FrameSettings, TrainSettings
    from tasks.shards import write_video_shards

    if not BOOK.is_file():
        return None
    manifest = write_video_shards(BOOK, "book", FrameSettings(every=1, size=(32, 56), dedupe=False), 0.1, out / "data")
    shards = [str(out / "data" / shard["file"]) for shard in manifest["shards"]]
    run = dict(run_dir=out / "run", batch_size=8, g_filters=16, d_filters=8, max_blocks=2, shuffle_buffer=32,
               checkpoint_every=2, eval_every=2, eval_frames=16, ema_decay=0.9, walk_seconds=0, steps_per_call=2)  # fmt: skip
    for steps, devices in ((2, "all"), (3, "one")):
        run_training(TrainSettings(**run, steps=steps, devices=devices), shards, (32, 56, 3), 109)
    history = pd.read_parquet(out / "run" / "history.parquet")
    losses = history[["g_loss", "d_loss", "d_real", "d_fake"]].to_numpy()
    evaluated = history.dropna(subset=["swd_mean"])["step"].tolist()
    return {"steps": history["step"].tolist(), "evaluated": evaluated, "finite": bool(np.isfinite(losses).all())}


def _child(out: Path) -> dict:
    """Runs in the child process; TensorFlow must not have initialised its devices before."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import numpy as np

    from gan.distribute import ReplicaError
    from gan.loop import run_training
    from gan.step import DCGAN
    from synthwave.settings import TrainSettings

    def make(devices: str, **overrides: object) -> DCGAN:
        return DCGAN(TrainSettings(**{**TINY, **overrides}, devices=devices), SHAPE)

    def batch(seed: int) -> tf.Tensor:
        return tf.random.stateless_uniform([4, *SHAPE], seed=(seed, 1), minval=-1.0, maxval=1.0)

    def variables(gan: DCGAN) -> list:
        models = [gan.generator, gan.discriminator, gan.ema_generator]
        return [v for m in models for v in m.variables] + gan.g_optimizer.variables + gan.d_optimizer.variables

    def snapshot(gan: DCGAN) -> list[np.ndarray]:
        state = [gan.noise_rng.state, gan.augment_rng.state, gan.step]
        return [np.asarray(v.numpy(), np.float64) for v in variables(gan) + state]

    def trainable(gan: DCGAN) -> list[np.ndarray]:
        return [v.numpy() for v in gan.generator.trainable_variables + gan.discriminator.trainable_variables]

    def furthest(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))

    def in_sync(gan: DCGAN) -> bool:
        copies = [gan.strategy.experimental_local_results(v.value) for v in variables(gan)]
        return all(np.array_equal(c[0].numpy(), other.numpy()) for c in copies for other in c[1:])

    def step(gan: DCGAN, seed: int) -> dict[str, float]:
        return {name: float(value) for name, value in gan.train_step(batch(seed)).items()}

    def loss_gap(a: dict, b: dict) -> float:
        return max(abs(a[name] - b[name]) for name in a)

    one, two = make("one"), make("all")
    assert one.strategy is None
    before = trainable(one)
    first = loss_gap(step(one, 0), step(two, 0))
    noise = tf.random.stateless_normal([6, TINY["latent_dim"]], seed=(5, 5))
    found = {"one_vs_two": {
        "replicas": two.strategy.num_replicas_in_sync, "loss": first, "weights": furthest(snapshot(one), snapshot(two)),
        "update": furthest(before, trainable(one)), "in_sync": in_sync(two),
        "samples": float(np.abs(one.sample(noise).numpy() - two.sample(noise).numpy()).max()),
    }}  # fmt: skip

    # Each run's checkpoint into a model of the other replica count, made from another seed.
    from_two, from_one = make("one", seed=9), make("all", seed=9)
    from_two.checkpoint().restore(two.checkpoint().save(str(out / "two" / "ckpt"))).assert_consumed()
    from_one.checkpoint().restore(one.checkpoint().save(str(out / "one" / "ckpt"))).assert_consumed()
    for name, writer, reader in (("two_to_one", two, from_two), ("one_to_two", one, from_one)):
        restored = furthest(snapshot(writer), snapshot(reader))
        gap = loss_gap(step(writer, 1), step(reader, 1))
        replicated = reader if reader.strategy else writer
        found[name] = {"restored": restored, "loss": gap, "weights": furthest(snapshot(writer), snapshot(reader)),
                       "in_sync": in_sync(replicated)}  # fmt: skip
    found["step"] = int(two.step.numpy())

    refused = []
    try:
        make("all", batch_size=5)
    except ReplicaError as exc:
        refused.append(str(exc))
    run_dir = out / "refused-run"
    try:
        run_training(TrainSettings(**{**TINY, "batch_size": 5}, devices="all", eval_every=0, run_dir=run_dir), [], SHAPE, 0)
    except ReplicaError as exc:
        refused.append(str(exc))
    try:
        make("all", jit_compile="on")
    except ReplicaError as exc:
        refused.append(str(exc))
    found["refused"], found["run_dir_created"] = refused, run_dir.exists()
    assert len(refused) == 3, refused

    # float16 as on GPUs (the dtype follows a visible GPU), on the two CPU replicas.
    physical = tf.config.list_physical_devices
    tf.config.list_physical_devices = lambda kind=None: ["pretend GPU"] if kind == "GPU" else physical(kind)
    half = make("all", mixed_precision="on", jit_compile="off", spectral_norm=False, augment="")
    tf.config.list_physical_devices = physical
    assert half.dtype_policy == "mixed_float16"
    d_before = [v.numpy() for v in half.discriminator.trainable_variables]
    poisoned = tf.concat([batch(2)[:2], tf.fill([2, *SHAPE], float("inf"))], 0)  # the second replica's rows
    half.train_step(poisoned)
    d_after = [v.numpy() for v in half.discriminator.trainable_variables]
    found["float16"] = {
        "d_scale": float(half.d_optimizer.dynamic_scale.numpy()),
        "g_scale": float(half.g_optimizer.dynamic_scale.numpy()),
        "d_unchanged": all(np.array_equal(b, a) for b, a in zip(d_before, d_after, strict=True)),
        "finite": all(np.isfinite(v.numpy()).all() for v in variables(half)), "in_sync": in_sync(half),
    }  # fmt: skip
    found["loop"] = _loop(out)
    return found


if __name__ == "__main__":
    print(json.dumps(_child(Path(sys.argv[1]))))
