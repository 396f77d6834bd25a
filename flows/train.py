"""The train flow: dataset.json -> DCGAN -> run directory + Prefect artifacts.

Rerunning it on the same run directory (or the UI's Retry after a crash) resumes from
the latest checkpoint.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.artifacts import TrainingArtifacts
from gan.index import load_index
from gan.loop import train as train_loop
from synthwave.settings import TrainSettings


@flow(name="train", log_prints=True)
def train(settings: TrainSettings = TrainSettings()) -> str:
    """Train the DCGAN on the shards listed in data_dir/dataset.json; returns the run directory."""
    logger = get_run_logger()
    index = load_index(settings.data_dir)
    logger.info("training on %d frames of %s from %d shards", index.frames, index.shape, len(index.shards))
    artifacts = TrainingArtifacts(settings)
    final = train_loop(settings, index.shards, index.shape, index.frames, on_progress=artifacts)
    artifacts.summary(final)
    logger.info("run directory: %s (samples: %s)", final.run.root, final.run.latest_grid)
    return str(final.run.root)
