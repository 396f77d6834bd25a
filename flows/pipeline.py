"""The pipeline flow: ingest then train, as subflows of one run the UI can schedule."""

from __future__ import annotations

from prefect import flow

from flows.ingest import ingest
from flows.train import train
from synthwave.settings import IngestSettings, TrainSettings


@flow(name="pipeline", log_prints=True)
def pipeline(
    sources: list[str],
    ingest_settings: IngestSettings = IngestSettings(),
    train_settings: TrainSettings = TrainSettings(),
) -> str:
    """Video URLs to samples: ingest the sources, then train on the dataset they make.

    Args:
        sources: Videos to ingest, one per entry: a YouTube video or playlist URL, an http(s) URL of
            a video file, or a path on the worker (relative to its working directory, the checkout).
        ingest_settings: Where the dataset goes, how videos are fetched and which frames are kept.
        train_settings: The model, its training and where the run directory goes; its data_dir
            must be ingest_settings' data_dir.
    """
    if ingest_settings.data_dir.resolve() != train_settings.data_dir.resolve():
        raise ValueError(
            f"ingest_settings.data_dir ({ingest_settings.data_dir}) and train_settings.data_dir "
            f"({train_settings.data_dir}) differ: training would not see the new shards"
        )
    ingest(sources, ingest_settings)
    return train(train_settings)
