"""The train flow: dataset.json -> DCGAN -> run directory + Prefect artifacts.

Rerunning it on the same run directory (or the UI's Retry after a crash) resumes from
the latest checkpoint. At the end it renders a short latent walk (`walk_seconds`) into
the run directory.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import TrainingArtifacts, input_share
from flows.progress import TrainingProgress
from gan.index import load_index, verify_shards
from gan.loop import check_image_size, run_training
from gan.walk import FILENAME, STRIP_FILENAME, save_strip, write_walk
from synthwave.settings import TrainSettings, WalkSettings
from tasks.storage import RunMirror, stage_dataset


@flow(name="train", log_prints=True)
def train(settings: TrainSettings = TrainSettings()) -> str:
    """Train the DCGAN on the shards listed in data_dir/dataset.json; returns the run directory.

    Args:
        settings: The dataset to train on, the model, its training and where the run directory goes.
    """
    logger = get_run_logger()
    mirror = RunMirror(settings.storage, settings.run_dir) if settings.storage else None
    if mirror is not None:  # on a fresh machine the shards, and the run so far, come from the bucket
        staged, pulled = stage_dataset(settings.storage, settings.data_dir), mirror.pull()
        logger.info("%s: %d shard(s) downloaded, %d run file(s) pulled", settings.storage.url, staged, pulled)
    index = load_index(settings.data_dir)
    check_image_size(settings, index.shape)  # a size the models cannot have is refused before any hashing
    verify_shards(settings.data_dir, index)  # a damaged shard is named now, not as a DataLossError mid-run
    logger.info("training on %d frames of %s from %d shards", index.frames, index.shape, len(index.shards))
    artifacts = TrainingArtifacts(settings)
    on_update = artifacts if mirror is None else mirror.after(artifacts)  # uploads after each checkpoint
    with TrainingProgress(logger) as display:
        final = run_training(settings, index.shards, index.shape, index.frames, on_update=on_update,
                             holdout=index.holdout, on_status=display)  # fmt: skip
    artifacts.summary(final)
    if final.history is not None:
        waiting = input_share(final.history, settings.schedule.batch_size)
        logger.info("%.0f%% of the training time was spent waiting for input", 100 * waiting)
    if settings.outputs.walk_seconds:
        logger.info("rendering a %g s latent walk at %dx%d", settings.outputs.walk_seconds, *index.shape[:2])
        video = write_walk(WalkSettings(
            run_dir=final.run.root, out=final.run.root / FILENAME, seconds=settings.outputs.walk_seconds,
            size=index.shape[:2], seed=settings.seed,
        ))  # fmt: skip
        artifacts.walk(video, save_strip(video, final.run.root / STRIP_FILENAME))
        logger.info("latent walk: %s", video)
    if mirror is not None:
        mirror.push()  # what came after the last checkpoint (the walk)
    logger.info("run directory: %s (samples: %s)", final.run.root, final.run.latest_grid)
    return str(final.run.root)
