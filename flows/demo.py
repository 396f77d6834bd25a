"""The demo: procedural synthwave clips -> the pipeline, offline, in a few minutes on CPU."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task

from flows.pipeline import pipeline
from synthwave.processes import command
from synthwave.settings import FrameSettings, IngestSettings, TrainSettings
from tasks.demo import render_demo_videos

SHOT_FRAMES = 12  # frames of one scene; ingest samples one frame of each shot


@task(name="render-demo-clips")
def render_clips(out_dir: Path) -> list[str]:
    paths = render_demo_videos(out_dir, count=8, shots=48, shot_frames=SHOT_FRAMES, size=(180, 320))
    return [str(path) for path in paths]


def demo_settings(root: Path, steps: int) -> tuple[IngestSettings, TrainSettings]:
    data_dir = root / "data"
    # Raw sampling: one frame of each scene already, and the demo's figures were measured on it
    # (docs/curation.md says what curation keeps of these clips).
    frames = FrameSettings(every=SHOT_FRAMES, size=(48, 80), dedupe=False)
    ingest = IngestSettings(data_dir=data_dir, frames=frames)
    # Small frames, a smaller model than the defaults' and D's lr at 4e-4: in 2000 steps on 2 cores
    # its samples are about as varied as the held-out frames, where D's 1e-4 or 64x112 frames leave
    # them blurrier and alike; with rates that fall to 0, G's own samples were as good as its EMA's
    # and more varied (docs/quality.md, "The demo").
    train = TrainSettings(
        data_dir=data_dir, run_dir=root / "run", steps=steps, g_filters=128, d_filters=32, d_lr=4e-4,
        ema_decay=None, sample_every=100, checkpoint_every=250, jit_compile="off",
    )  # fmt: skip
    return ingest, train


def final_quality(run_dir: Path) -> str:
    """The last evaluation, as a line a person can read."""
    history = pd.read_parquet(run_dir / "history.parquet")
    evaluated = history[history["ms_ssim"].notna()]
    if evaluated.empty:
        return "not evaluated (too few steps or held-out frames)"
    last = evaluated.iloc[-1]
    return (f"step {last.step}: MS-SSIM among samples {last.ms_ssim:.3f}, among held-out frames "
            f"{last.ms_ssim_real:.3f} (lower: more varied); SWD {last.swd_mean:.1f}")


@flow(name="demo", log_prints=True)
def demo(root: Path = Path(".synthwave/demo"), steps: int = 2000) -> str:
    """Render clips into root/videos, ingest them into root/data, train into root/run."""
    sources = render_clips(root / "videos")
    ingest_settings, train_settings = demo_settings(root, steps)
    run_dir = Path(pipeline(sources, ingest_settings, train_settings))
    print(
        f"\nDemo finished. Quality at the last {final_quality(run_dir)}.\nLook at:\n"
        f"  samples      {run_dir / 'samples' / 'latest.png'}\n"
        f"  loss plot    {run_dir / 'loss.png'}\n"
        f"  history      {run_dir / 'history.parquet'}\n"
        f"  checkpoints  {run_dir / 'checkpoints'}\n"
        f"  dataset      {ingest_settings.data_dir / 'dataset.json'}\n"
        f"Next: {command('synthwave')} generate --run-dir {run_dir} --out grid.png\n"
        f"      {command('synthwave')} ingest <YouTube URL>... --data-dir data   (your own videos)"
    )
    return str(run_dir)
