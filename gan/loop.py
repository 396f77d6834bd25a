"""The training loop: steps, samples, history, checkpoints and resume, in one run directory.

Crash safety comes from the order of writes. The history is flushed before each
checkpoint, and a resume truncates the history to the checkpoint's step, so after a
crash at any point the rerun continues with no duplicate and no missing step.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from gan.data import image_dataset
from gan.history import History
from gan.images import save_grid
from gan.models import upsampling_plan
from gan.plots import plot_losses
from gan.run import RunDir
from gan.step import DCGAN
from synthwave.settings import TrainSettings


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class Progress:
    """What the loop just wrote; the Prefect flow turns it into artifacts."""

    step: int
    total: int
    run: RunDir
    grid: Path | None = None
    checkpoint: str | None = None
    history: object = None  # pandas.DataFrame of all steps so far, when flushed


Callback = Callable[[Progress], None]


class ImageSizeError(ValueError):
    """The dataset's image size is one the generator cannot produce; says which --size would do."""


def check_image_size(settings: TrainSettings, image_shape: tuple[int, int, int]) -> None:
    """Refuse, before anything is built or written, an image size the models cannot have."""
    height, width = image_shape[0], image_shape[1]
    try:
        upsampling_plan(height, width, settings.max_blocks)
    except ValueError as exc:
        even = f"{height + height % 2}x{width + width % 2}"
        raise ImageSizeError(
            f"cannot train on {height}x{width} images ({exc}): re-ingest with --size HxW, both sides "
            f"even (e.g. --size {even}), into another --data-dir"
        ) from None


def fixed_noise(settings: TrainSettings) -> tf.Tensor:
    """`gen_noise`: the same latent vectors for every grid of a run, resumes included."""
    rng = tf.random.Generator.from_seed(settings.seed + 7919)
    return rng.normal([settings.grid_size, settings.latent_dim])


def build(settings: TrainSettings, image_shape: tuple[int, int, int]) -> tuple[DCGAN, tf.train.CheckpointManager]:
    """The model and its checkpoint manager, restored from the run's latest checkpoint if any."""
    gan = DCGAN(settings, image_shape)
    manager = tf.train.CheckpointManager(
        gan.checkpoint(), str(RunDir(settings.run_dir).checkpoints), max_to_keep=settings.keep_checkpoints
    )
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    return gan, manager


def train(
    settings: TrainSettings,
    shard_paths: list[str],
    image_shape: tuple[int, int, int],
    frames: int,
    on_progress: Callback = lambda progress: None,
) -> Progress:
    """Train until `settings.steps`, resuming from the run directory's latest checkpoint."""
    check_image_size(settings, image_shape)  # before the run dir is created or locked
    run = RunDir(settings.run_dir)
    lock = run.lock()
    try:
        run.claim(settings, image_shape)
        return _train(settings, run, shard_paths, image_shape, frames, on_progress)
    finally:
        os.close(lock)


def _train(settings, run, shard_paths, image_shape, frames, on_progress) -> Progress:
    gan, manager = build(settings, image_shape)
    step = int(gan.step.numpy())
    history = History(run.history)
    history.truncate(step)
    noise = fixed_noise(settings)
    writer = tf.summary.create_file_writer(str(run.tensorboard))

    def sample(step: int) -> Path:
        images = gan.sample(noise).numpy()
        with writer.as_default(step=step):
            tf.summary.image("samples", (images[:4] + 1.0) / 2.0, max_outputs=4)
        path = save_grid(images, run.grid(step))
        save_grid(images, run.latest_grid)
        return path

    if step == 0:
        on_progress(Progress(0, settings.steps, run, grid=sample(0)))
    # A resumed run reshuffles from a new seed rather than replaying the first batches.
    batches = iter(image_dataset(shard_paths, settings.batch_size, shuffle_buffer=settings.shuffle_buffer,
                                 seed=settings.seed + step, repeat=True))
    last = time.perf_counter()
    progress = Progress(step, settings.steps, run)
    while step < settings.steps:
        metrics = {name: float(value) for name, value in gan.train_step(next(batches)).items()}
        step = int(gan.step.numpy())
        now = time.perf_counter()
        if not all(math.isfinite(value) for value in metrics.values()):
            raise NonFiniteLoss(
                f"loss is not finite at step {step} ({metrics}); kept the last good checkpoint "
                f"{manager.latest_checkpoint or '(none yet)'}: lower --g-lr/--d-lr and rerun to resume"
            )
        history.append({"step": step, "epoch": step * settings.batch_size / max(frames, 1), **metrics,
                        "images_per_s": settings.batch_size / (now - last), "wall_time": time.time()})
        last = now
        with writer.as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(name, value)

        grid = sample(step) if step % settings.sample_every == 0 or step == settings.steps else None
        checkpoint = step % settings.checkpoint_every == 0 or step == settings.steps
        if grid or checkpoint:
            table = history.flush()  # before the checkpoint: see the module docstring
            plot_losses(table, run.loss_plot)
            saved = manager.save(checkpoint_number=step) if checkpoint else None
            writer.flush()
            progress = Progress(step, settings.steps, run, grid=grid, checkpoint=saved, history=table)
            on_progress(progress)
            last = time.perf_counter()  # artifact work is not training time
    return progress


def generate(run_dir: Path, count: int = 16, seed: int = 0) -> np.ndarray:
    """Images in [-1, 1] from the latest checkpoint of a run directory."""
    run = RunDir(run_dir)
    config = run.load_config()
    settings = TrainSettings(run_dir=run_dir, **config["model_settings"])
    gan, manager = build(settings, tuple(config["image_shape"]))
    if not manager.latest_checkpoint:
        raise FileNotFoundError(f"{run.checkpoints} has no checkpoint yet: train first")
    noise = tf.random.Generator.from_seed(seed).normal([count, settings.latent_dim])
    return gan.sample(noise).numpy()
