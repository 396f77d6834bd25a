"""Training progress as Prefect artifacts on the flow run.

The UI shows an image artifact by loading its URL in the browser, so the URL must be
one the browser can reach: `artifact_base_url` + the file's path in the run directory
when the run directory is served (the local stack serves it; a bucket URL works too),
else the image itself, inlined as a small JPEG data URL.

Each kind (samples, loss plot, losses, quality, ...) is one artifact key (`run_key`), every
update a new version of it: the UI's Artifacts page shows the latest with its history behind.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import pandas as pd
from PIL import Image
from prefect import get_run_logger
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from gan.loop import RunUpdate
from synthwave.settings import TrainSettings
from synthwave.text import slug

# The losses table shows what a person reads while training runs; the rest is in history.parquet.
LOSS_COLUMNS = ["step", "epoch", "g_loss", "d_loss", "d_real", "d_fake", "images_per_s"]
INLINE_WIDTH = 768  # inlined images are shrunk to keep the artifact small in the database


def image_url(path: Path, settings: TrainSettings) -> str:
    if settings.outputs.artifact_base_url:
        relative = path.resolve().relative_to(settings.run_dir.resolve()).as_posix()
        return f"{settings.outputs.artifact_base_url.rstrip('/')}/{relative}"
    image = Image.open(path).convert("RGB")
    if image.width > INLINE_WIDTH:
        image = image.resize((INLINE_WIDTH, round(image.height * INLINE_WIDTH / image.width)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def run_key(settings: TrainSettings) -> str:
    """The artifact key prefix of a run directory: its name, slugged, and a digest of where it lives.

    Each kind of artifact is one key, and every update a new version of it. The name makes the
    key readable; the digest keeps two runs of one name (runs/a/run, runs/b/run) apart. A run
    mirrored to a bucket lives at <url>/runs/<name>, so resumed on another machine it keeps its keys."""
    name = settings.run_dir.resolve().name
    place = f"{settings.storage.url}/runs/{name}" if settings.storage else str(settings.run_dir.resolve())
    return f"{slug(name) or 'run'}-{hashlib.sha256(place.encode()).hexdigest()[:6]}"


class TrainingArtifacts:
    """The callback the training loop reports to, and the artifacts of the run's later phases."""

    def __init__(self, settings: TrainSettings):
        self.settings = settings
        self.key = run_key(settings)
        self.progress = None  # created at the first report, by the task that trains

    def __call__(self, update: RunUpdate) -> None:
        if self.progress is None:
            self.progress = create_progress_artifact(0.0, description=f"Training steps of {self.settings.run_dir}")
        update_progress_artifact(self.progress, 100.0 * update.step / update.total)
        if update.grid is not None:
            create_image_artifact(
                image_url(update.grid, self.settings),
                key=f"{self.key}-samples",
                description=f"Samples from the fixed noise at step {update.step}",
            )
        if update.history is not None:
            create_image_artifact(
                image_url(update.run.loss_plot, self.settings),
                key=f"{self.key}-loss-plot",
                description=f"Losses up to step {update.step}",
            )
            create_table_artifact(
                _records(update.history[LOSS_COLUMNS].tail(10)), key=f"{self.key}-losses",
                description="Most recent steps",
            )
        if update.evaluated:
            self._quality(update)

    def _quality(self, update: RunUpdate) -> None:
        """The SWD plot, a table of every evaluation, and a log line (a warning on mode collapse)."""
        create_image_artifact(
            image_url(update.run.quality_plot, self.settings),
            key=f"{self.key}-quality-plot",
            description=f"SWD and MS-SSIM vs held-out frames up to step {update.step}",
        )
        evaluations = _evaluations(update.history)
        create_table_artifact(
            _records(evaluations), key=f"{self.key}-quality",
            description="Sample quality at each evaluation (SWD: lower is better)",
        )  # fmt: skip
        last = evaluations.iloc[-1]
        line = (f"step {update.step}: SWD {last.swd_mean:.1f}, MS-SSIM {last.ms_ssim:.3f} "
                f"(held-out frames {last.ms_ssim_real:.3f})")
        if pd.notna(last.mode_collapse) and last.mode_collapse:
            get_run_logger().warning("%s: mode collapse (samples far less diverse than held-out frames)", line)
        else:
            get_run_logger().info(line)

    def summary(self, update: RunUpdate) -> None:
        run = update.run
        checkpoints = sorted(run.checkpoints.glob("ckpt-*.index"))
        last = update.history.iloc[-1] if update.history is not None and len(update.history) else None
        lines = [
            f"# Training run `{run.root.resolve()}`",
            f"Step **{update.step}** of {update.total}.",
            "",
            "| file | path |",
            "| --- | --- |",
            f"| loss history (Parquet) | `{run.history.resolve()}` |",
            f"| loss plot | `{run.loss_plot.resolve()}` |",
            f"| latest samples | `{run.latest_grid.resolve()}` |",
            f"| TensorBoard | `tensorboard --logdir {run.tensorboard.resolve()}` |",
            *(f"| checkpoint | `{path.with_suffix('').resolve()}` |" for path in checkpoints),
        ]
        if last is not None:
            waiting = input_share(update.history, self.settings.schedule.batch_size)
            lines += ["", f"Last step: g_loss {last.g_loss:.4f}, d_loss {last.d_loss:.4f}, "
                      f"D(x) {last.d_real:.3f}, D(G(z)) {last.d_fake:.3f}, {last.images_per_s:.1f} images/s.",
                      "", f"Waiting for input: {waiting:.0%} of the training time (input-bound when large: "
                      "`cache_frames`, JPEG shards or more reader cores help; docs/training-loop.md)."]
            evaluations = _evaluations(update.history)
            if len(evaluations):
                quality = evaluations.iloc[-1]
                levels = ", ".join(f"{quality[c]:.4f}" for c in evaluations if c.startswith("swd_l"))
                lines += ["", f"Quality at step {quality.step}: SWD **{quality.swd_mean:.4f}** (levels {levels}), "
                          f"MS-SSIM {quality.ms_ssim:.3f}{', MODE COLLAPSE' if pd.notna(quality.mode_collapse) and quality.mode_collapse else ''}; "
                          f"plot `{run.quality_plot.resolve()}`."]
        create_markdown_artifact("\n".join(lines), key=f"{self.key}-summary", description="Training summary")

    def walk(self, video: Path, strip: Path) -> None:
        """The UI cannot play a video: a note linking it (or naming its path) and a strip of its frames."""
        settings = self.settings
        # image_url only reads the file to inline it; with a base URL it is the file's URL, video or not.
        where = f"[{video.name}]({image_url(video, settings)})" if settings.outputs.artifact_base_url else f"`{video.resolve()}`"
        create_markdown_artifact(
            f"# Latent walk\n\n{settings.outputs.walk_seconds:g} s through the latent space of the last checkpoint: {where} "
            f"(MPEG-4: VLC, mpv, QuickTime). Longer or larger: `synthwave walk --run-dir {settings.run_dir} --help`.",
            key=f"{self.key}-walk", description="Latent walk video",
        )  # fmt: skip
        create_image_artifact(image_url(strip, settings), key=f"{self.key}-walk-frames", description="Frames of the latent walk")


def input_share(history: pd.DataFrame, batch_size: int) -> float:
    """The share of the training wall time its steps waited for input (steps without timings left out)."""
    timed = history[history["input_s"].notna()]
    seconds = (batch_size / timed["images_per_s"]).sum()
    return float(timed["input_s"].sum() / seconds) if seconds > 0 else 0.0


def _evaluations(history: pd.DataFrame) -> pd.DataFrame:
    """The evaluation rows' step and quality columns, the pyramid levels the image size has."""
    rows = history[history["swd_mean"].notna()]
    columns = ["step", *(c for c in rows if c.startswith("swd") and rows[c].notna().any()), "ms_ssim", "ms_ssim_real", "mode_collapse"]
    return rows[columns]


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows for a table artifact: rounded, with NaN and <NA> (steps without evaluation) as None.
    float32 is widened first: 0.7829 as float32 would print as 0.7828999757766724."""
    floats = {column: "float64" for column in table.select_dtypes("floating").columns}
    table = table.astype(floats).round(4)
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")
