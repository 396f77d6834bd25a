"""The demo: procedural synthwave clips -> the pipeline, offline, in a few minutes on CPU."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.pipeline import pipeline
from synthwave.settings import FrameSettings, IngestSettings, TrainSettings
from tasks.demo import render_demo_videos


@task(name="render-demo-clips")
def render_clips(out_dir: Path) -> list[str]:
    return [str(path) for path in render_demo_videos(out_dir, count=4)]


def demo_settings(root: Path, steps: int) -> tuple[IngestSettings, TrainSettings]:
    data_dir = root / "data"
    # Each procedural clip is one scene slowly animated: one image to curation, which would refuse it.
    ingest = IngestSettings(data_dir=data_dir, frames=FrameSettings(every=3, size=(64, 112), dedupe=False))
    train = TrainSettings(
        data_dir=data_dir, run_dir=root / "run", steps=steps, g_filters=128, d_filters=32,
        sample_every=50, checkpoint_every=100, jit_compile="off",
    )
    return ingest, train


@flow(name="demo", log_prints=True)
def demo(root: Path = Path(".synthwave/demo"), steps: int = 600) -> str:
    """Render clips into root/videos, ingest them into root/data, train into root/run."""
    sources = render_clips(root / "videos")
    ingest_settings, train_settings = demo_settings(root, steps)
    run_dir = Path(pipeline(sources, ingest_settings, train_settings))
    print(
        f"\nDemo finished. Look at:\n"
        f"  samples      {run_dir / 'samples' / 'latest.png'}\n"
        f"  loss plot    {run_dir / 'loss.png'}\n"
        f"  history      {run_dir / 'history.parquet'}\n"
        f"  checkpoints  {run_dir / 'checkpoints'}\n"
        f"  dataset      {ingest_settings.data_dir / 'dataset.json'}\n"
        f"Next: synthwave generate --run-dir {run_dir} --out grid.png\n"
        f"      synthwave ingest <YouTube URL>... --data-dir data   (your own videos)"
    )
    return str(run_dir)
