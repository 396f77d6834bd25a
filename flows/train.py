"""The train flow: dataset.json -> DCGAN -> run directory + Prefect artifacts.

Its phases are tasks, so the flow run's graph shows them: stage the data (from the bucket
when there is one; the dataset checked), train, render the latent walk (`walk_seconds`),
publish (the summary artifact, the last upload). None is cached: rerunning the flow on the
same run directory (or the UI's Retry after a crash) runs them again and training resumes
from the latest checkpoint itself.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import TrainingArtifacts, input_share
from flows.progress import TrainingProgress
from gan.index import DatasetIndex, load_index, verify_shards
from gan.loop import RunUpdate, check_image_size, run_training
from gan.walk import FILENAME, STRIP_FILENAME, save_strip, write_walk
from synthwave.settings import TrainSettings, WalkSettings
from tasks.storage import RunMirror, stage_dataset

# Nothing cached or persisted (even with results persisted by default): a Retry runs every phase
# again, and training resumes from its own checkpoints.
PHASE = dict(cache_policy=NO_CACHE, persist_result=False)


@task(name="stage-data", **PHASE)
def stage_data(settings: TrainSettings, mirror: RunMirror | None) -> DatasetIndex:
    """The dataset's index, its shards checked; with storage, shards and the run so far downloaded first."""
    logger = get_run_logger()
    if mirror is not None:  # on a fresh machine the shards, and the run so far, come from the bucket
        staged, pulled = stage_dataset(settings.storage, settings.data_dir), mirror.pull()
        logger.info("%s: %d shard(s) downloaded, %d run file(s) pulled", settings.storage.url, staged, pulled)
    index = load_index(settings.data_dir)
    check_image_size(settings, index.shape)  # a size the models cannot have is refused before any hashing
    verify_shards(settings.data_dir, index)  # a damaged shard is named now, not as a DataLossError mid-run
    logger.info("training on %d frames of %s from %d shards", index.frames, index.shape, len(index.shards))
    return index


@task(name="train", **PHASE)
def train_model(settings: TrainSettings, index: DatasetIndex, mirror: RunMirror | None) -> RunUpdate:
    """Train to `settings.schedule.steps`, resuming from the run's latest checkpoint; artifacts and log lines as it goes."""
    logger = get_run_logger()
    artifacts = TrainingArtifacts(settings)

    def on_update(update: RunUpdate) -> None:
        artifacts(update)
        if mirror is not None:
            mirror.push()  # what the update wrote (a checkpoint, grids, history) goes to the bucket now

    with TrainingProgress(logger) as display:
        final = run_training(settings, index.shards, index.shape, index.frames, on_update=on_update,
                             holdout=index.holdout, on_status=display)  # fmt: skip
    if final.history is not None:
        waiting = input_share(final.history, settings.schedule.batch_size)
        logger.info("%.0f%% of the training time was spent waiting for input", 100 * waiting)
    return final


@task(name="render-walk", **PHASE)
def render_walk(settings: TrainSettings, final: RunUpdate, size: tuple[int, int]) -> None:
    """A `walk_seconds` video through the latent space of the last checkpoint, and a strip of its frames."""
    logger = get_run_logger()
    logger.info("rendering a %g s latent walk at %dx%d", settings.outputs.walk_seconds, *size)
    video = write_walk(WalkSettings(
        run_dir=final.run.root, out=final.run.root / FILENAME, seconds=settings.outputs.walk_seconds, size=size,
        seed=settings.seed,
    ))  # fmt: skip
    TrainingArtifacts(settings).walk(video, save_strip(video, final.run.root / STRIP_FILENAME))
    logger.info("latent walk: %s", video)


@task(name="publish", **PHASE)
def publish(settings: TrainSettings, final: RunUpdate, mirror: RunMirror | None) -> str:
    """The summary artifact, and with storage the files written since the last checkpoint's upload."""
    TrainingArtifacts(settings).summary(final)
    if mirror is not None:
        mirror.push()  # what came after the last checkpoint (the walk)
    get_run_logger().info("run directory: %s (samples: %s)", final.run.root, final.run.latest_grid)
    return str(final.run.root)


@flow(name="train", log_prints=True)
def train(settings: TrainSettings = TrainSettings()) -> str:
    """Train the DCGAN on the shards listed in data_dir/dataset.json; returns the run directory.

    Args:
        settings: The dataset to train on, the model, its training and where the run directory goes.
    """
    mirror = RunMirror(settings.storage, settings.run_dir) if settings.storage else None
    index = stage_data(settings, mirror)
    final = train_model(settings, index, mirror)
    if settings.outputs.walk_seconds:
        render_walk(settings, final, index.shape[:2])
    return publish(settings, final, mirror)
