"""The training loop: steps, samples, history, checkpoints and resume, in one run directory.

Crash safety comes from the order of writes: the history is flushed before each checkpoint,
and a resume truncates the history to the checkpoint's step, so after a crash at any point
the rerun continues with no duplicate and no missing step.

A call of the step runs up to `steps_per_call` steps and ends at the next step that samples,
evaluates or checkpoints (`call_length`), so those happen at their steps. Every `eval_every`
steps the samples of a fixed eval noise are compared with held-out frames (SWD, MS-SSIM)
into that step's history row; evaluation draws from no training RNG, so it changes nothing
in training. docs/training-loop.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from gan import checkpoints
from gan.data import cache_bytes, holdout_images, image_dataset, memory_bytes
from gan.distribute import replica_devices
from gan.history import SWD_LEVELS, History
from gan.images import save_grid
from gan.index import DatasetError, Holdout
from gan.metrics import MIN_SIDE, mode_collapse, ms_ssim_diversity, sliced_wasserstein
from gan.models import MIN_BASE, upsampling_plan
from gan.plots import plot_losses, plot_quality
from gan.run import RunDir, RunDirError
from gan.step import DCGAN, METRICS
from synthwave.errors import UserError
from synthwave.settings import EvaluationSettings, ModelSettings, RuntimeSettings, ScheduleSettings, TrainSettings

logger = logging.getLogger(__name__)

class NonFiniteLoss(UserError, RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunUpdate:
    """What the loop just wrote to the run directory; the Prefect flow turns it into artifacts."""

    step: int
    total: int
    run: RunDir
    grid: Path | None = None
    checkpoint: str | None = None
    history: object = None  # pandas.DataFrame of all steps so far, when flushed
    evaluated: bool = False  # this step's history row has SWD and MS-SSIM; quality.png is new


@dataclass(frozen=True)
class Status:
    """The loop's state after each call of the step, for a progress display."""

    step: int
    total: int
    start: int  # the step this run started from: > 0 when it resumed
    g_loss: float
    d_loss: float
    images_per_s: float  # over the last call
    input_share: float  # of the training wall time since `start`, spent waiting for input


UpdateCallback = Callable[[RunUpdate], None]
StatusCallback = Callable[[Status], None]


class ImageSizeError(UserError, ValueError):
    """The dataset's image size is one the generator cannot produce; says which --size would do."""


def check_image_size(settings: TrainSettings, image_shape: tuple[int, int, int]) -> None:
    """Refuse, before anything is built or written, an image size the models cannot have."""
    height, width = image_shape[0], image_shape[1]
    if settings.evaluation.eval_every and min(height, width) < MIN_SIDE:
        raise ImageSizeError(
            f"cannot evaluate {height}x{width} images: SWD needs both sides >= {MIN_SIDE} px; "
            f"set --eval-every 0 or re-ingest with a larger --size"
        )
    try:
        upsampling_plan(height, width, settings.model.max_blocks)
    except ValueError as exc:
        fix = _size_fix(height, width, settings.model.max_blocks)
        raise ImageSizeError(f"cannot train on {height}x{width} images ({exc}): {fix}") from None


def _size_fix(height: int, width: int, max_blocks: int) -> str:
    """What would train on images of this size: fewer blocks, else another size."""
    for blocks in range(max_blocks - 1, 0, -1):
        try:
            upsampling_plan(height, width, blocks)
        except ValueError:
            continue
        return f"set --max-blocks {blocks}"
    even = f"{max(height + height % 2, 2 * MIN_BASE)}x{max(width + width % 2, 2 * MIN_BASE)}"
    return f"re-ingest with --size HxW, both sides even (e.g. --size {even}), into another --data-dir"


def fixed_noise(seed: int, count: int, model: ModelSettings) -> tf.Tensor:
    """`gen_noise`: the same latent vectors for every grid of a run, resumes included."""
    return tf.random.Generator.from_seed(seed + 7919).normal([count, model.latent_dim])


def eval_noise(seed: int, count: int, model: ModelSettings) -> tf.Tensor:
    """The latent vectors evaluated at every evaluation of a run: one per held-out frame."""
    return tf.random.Generator.from_seed(seed + 104729).normal([count, model.latent_dim])


def samples(gan: DCGAN, noise: tf.Tensor) -> np.ndarray:
    """The (EMA) generator's images of `noise`, a batch at a time, in [-1, 1]."""
    batch = gan.settings.schedule.batch_size
    return np.concatenate([gan.sample(noise[i : i + batch]).numpy() for i in range(0, len(noise), batch)])


# Before this many steps samples are alike because G has not learnt yet, not because it
# collapsed: the verdict is left empty rather than raise a false alarm on every short run.
COLLAPSE_JUDGED_FROM = 500


def evaluate(fake: np.ndarray, real: np.ndarray, real_ms_ssim: float, step: int = COLLAPSE_JUDGED_FROM) -> dict:
    """History columns comparing generated images `fake` with the held-out frames `real`."""
    swd = sliced_wasserstein(real, fake)
    levels = {f"swd_l{level}": value for level, value in enumerate(swd.levels[:SWD_LEVELS])}
    diversity = ms_ssim_diversity(fake)
    verdict = mode_collapse(diversity, real_ms_ssim) if step >= COLLAPSE_JUDGED_FROM else None
    return {"swd_mean": swd.mean, **levels, "ms_ssim": diversity, "ms_ssim_real": real_ms_ssim,
            "mode_collapse": verdict}


def use_cache(runtime: RuntimeSettings, frames: int, image_shape: tuple[int, int, int]) -> bool:
    """Whether the decoded training frames are kept in memory (`cache_frames`): with "auto", when they
    fit in `cache_memory_share` of the memory."""
    if runtime.cache_frames != "auto":
        return runtime.cache_frames == "memory"
    return cache_bytes(frames, image_shape) <= runtime.cache_memory_share * memory_bytes()


def call_length(schedule: ScheduleSettings, evaluation: EvaluationSettings, step: int, steps_per_call: int) -> int:
    """Steps in the next call: up to `steps_per_call`, ending at the next step that samples,
    evaluates or checkpoints, or the last."""
    periods = [schedule.sample_every, schedule.checkpoint_every] + ([evaluation.eval_every] if evaluation.eval_every else [])
    boundary = min([schedule.steps] + [(step // period + 1) * period for period in periods])
    return min(steps_per_call, boundary - step)


def build(settings: TrainSettings, image_shape: tuple[int, int, int]) -> tuple[DCGAN, tf.train.CheckpointManager]:
    """The model and its checkpoint manager, restored from the run's newest checkpoint that
    restores, if any (gan/checkpoints.py)."""
    directory = RunDir(settings.run_dir).checkpoints
    checkpoints.sweep_partial_saves(directory)
    gan = checkpoints.restore_newest(lambda: DCGAN(settings, image_shape), directory)
    manager = tf.train.CheckpointManager(gan.checkpoint(), str(directory), max_to_keep=settings.outputs.keep_checkpoints)
    return gan, manager


def run_training(
    settings: TrainSettings,
    shard_paths: list[str],
    image_shape: tuple[int, int, int],
    frames: int,
    on_update: UpdateCallback = lambda update: None,
    holdout: Holdout = Holdout(),
    on_status: StatusCallback = lambda status: None,
) -> RunUpdate:
    """Train until `settings.schedule.steps` on the frames outside `holdout`, resuming from the run
    directory's latest checkpoint."""
    check_image_size(settings, image_shape)  # before the run dir is created or locked
    replica_devices(settings.runtime, settings.schedule.batch_size)  # likewise: a batch the replicas can share
    run = RunDir(settings.run_dir)
    lock = run.lock()
    try:
        run.claim(settings.model, image_shape)
        return _train(settings, run, shard_paths=shard_paths, image_shape=image_shape, frames=frames,
                      holdout=holdout, on_update=on_update, on_status=on_status)  # fmt: skip
    finally:
        os.close(lock)


def _train(
    settings: TrainSettings, run: RunDir, *, shard_paths: list[str], image_shape: tuple[int, int, int], frames: int,
    holdout: Holdout, on_update: UpdateCallback, on_status: StatusCallback,
) -> RunUpdate:  # fmt: skip
    """`run_training`'s loop, in the locked and claimed run directory."""
    schedule, evaluation = settings.schedule, settings.evaluation
    gan, manager = build(settings, image_shape)
    step = int(gan.step.numpy())
    history = History(run.history)
    history.truncate(step)
    noise = fixed_noise(settings.seed, settings.outputs.grid_size, settings.model)
    writer = tf.summary.create_file_writer(str(run.tensorboard))
    # The per-step losses go to TensorBoard from Python, cheaper than tf.summary's eager ops (docs/training-loop.md).
    losses_log = EventFileWriter(str(run.tensorboard))

    def sample(step: int) -> Path:
        images = gan.sample(noise).numpy()
        with writer.as_default(step=step):
            tf.summary.image("samples", (images[:4] + 1.0) / 2.0, max_outputs=4)
        path = save_grid(images, run.grid(step))
        save_grid(images, run.latest_grid)
        return path

    if step == 0:
        on_update(RunUpdate(0, schedule.steps, run, grid=sample(0)))
    cache = use_cache(settings.runtime, frames, image_shape)
    logger.info("decoded frames: %s", "cached in memory after the first epoch" if cache else "decoded every epoch")
    # A resumed run reshuffles from a new seed rather than replaying the first batches.
    batches = iter(image_dataset(shard_paths, schedule.batch_size, shuffle_buffer=schedule.shuffle_buffer,
                                 seed=settings.seed + step, repeat=True, split="train", holdout=holdout, cache=cache))
    real = holdout_images(shard_paths, holdout, evaluation.eval_frames) if evaluation.eval_every else np.zeros(0)
    if evaluation.eval_every and len(real) < 2:
        logger.warning("%d held-out frame(s): SWD needs 2 or more, so this run is not evaluated", len(real))
    noise_eval = eval_noise(settings.seed, len(real), settings.model) if len(real) >= 2 else None
    real_ms_ssim = ms_ssim_diversity(real) if noise_eval is not None else None
    start, trained_s, waited_s = step, 0.0, 0.0
    last = time.perf_counter()
    update = RunUpdate(step, schedule.steps, run)
    while step < schedule.steps:
        count = call_length(schedule, evaluation, step, gan.steps_per_call)
        try:
            rows = gan.train_steps(batches, tf.constant(count)).numpy()
        except tf.errors.OutOfRangeError:
            raise DatasetError(
                f"no frame left to train on: all {frames} are held out for evaluation; ingest more frames"
            ) from None
        now = time.perf_counter()
        finite = np.isfinite(rows[:, : len(METRICS)]).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise NonFiniteLoss(
                f"loss is not finite at step {step + bad + 1} ({dict(zip(METRICS, rows[bad].tolist()))}); kept the "
                f"last good checkpoint {manager.latest_checkpoint or '(none yet)'}: lower --g-lr/--d-lr and rerun to resume"
            )
        images_per_s = count * schedule.batch_size / (now - last)
        trained_s, waited_s = trained_s + now - last, waited_s + float(rows[:, -2].sum())
        last = now
        first, step = step + 1, step + count
        due = evaluation.eval_every and (step % evaluation.eval_every == 0 or step == schedule.steps)
        quality = evaluate(samples(gan, noise_eval), real, real_ms_ssim, step) if due and noise_eval is not None else {}
        wall_time = time.time()
        for at, values in enumerate(rows.tolist(), start=first):
            metrics = dict(zip(METRICS, values))
            evaluated = quality if at == step else {}  # a call ends at the step that evaluates
            history.append({"step": at, "epoch": at * schedule.batch_size / max(frames, 1), **metrics,
                            "images_per_s": images_per_s, "input_s": values[-2], "compute_s": values[-1],
                            "wall_time": wall_time, **evaluated})  # fmt: skip
            losses = [Summary.Value(tag=name, simple_value=value) for name, value in metrics.items()]
            losses_log.add_event(Event(step=at, wall_time=wall_time, summary=Summary(value=losses)))
        with writer.as_default(step=step):
            for name, value in quality.items():
                if value is not None:  # a mode-collapse verdict not yet given
                    tf.summary.scalar(name, float(value))
        on_status(Status(step, schedule.steps, start, metrics["g_loss"], metrics["d_loss"], images_per_s,
                         waited_s / trained_s))  # fmt: skip

        grid = sample(step) if step % schedule.sample_every == 0 or step == schedule.steps else None
        checkpoint = step % schedule.checkpoint_every == 0 or step == schedule.steps
        if grid or checkpoint or quality:
            table = history.flush()  # before the checkpoint: see the module docstring
            plot_losses(table, run.loss_plot)
            if quality:
                plot_quality(table, run.quality_plot)
            saved = checkpoints.save(manager, step) if checkpoint else None
            writer.flush()
            losses_log.flush()
            update = RunUpdate(step, schedule.steps, run, grid=grid, checkpoint=saved, history=table,
                               evaluated=bool(quality))
            on_update(update)
            last = time.perf_counter()  # artifact work is not training time
    losses_log.close()
    return update


def restore(run_dir: Path) -> DCGAN:
    """A run's model at its latest checkpoint, on one device: sampling needs no replicas
    (and no batch size they can share)."""
    if not Path(run_dir).is_dir():
        raise RunDirError(f"run dir {run_dir} not found: give --run-dir a training run directory")
    run = RunDir(run_dir)
    config = run.load_config()
    settings = TrainSettings(run_dir=run_dir, model=config["model_settings"], runtime={"devices": "one"})
    gan, manager = build(settings, tuple(config["image_shape"]))
    if not manager.latest_checkpoint:
        raise RunDirError(f"{run.checkpoints} has no checkpoint yet: train first")
    return gan


def generate(run_dir: Path, count: int = 16, seed: int = 0) -> np.ndarray:
    """Images in [-1, 1] from the latest checkpoint of a run directory."""
    gan = restore(run_dir)
    return gan.sample(tf.random.Generator.from_seed(seed).normal([count, gan.settings.model.latent_dim])).numpy()
