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
    """Video URLs to samples: ingest the sources, then train on the dataset they make."""
    if ingest_settings.data_dir.resolve() != train_settings.data_dir.resolve():
        raise ValueError(
            f"ingest_settings.data_dir ({ingest_settings.data_dir}) and train_settings.data_dir "
            f"({train_settings.data_dir}) differ: training would not see the new shards"
        )
    ingest(sources, ingest_settings)
    return train(train_settings)
