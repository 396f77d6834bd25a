"""Training progress as Prefect artifacts on the flow run.

The UI shows an image artifact by loading its URL in the browser, so the URL must be
one the browser can reach: `artifact_base_url` + the file's path in the run directory
when the run directory is served (the local stack serves it; a bucket URL works too),
else the image itself, inlined as a small JPEG data URL.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from PIL import Image
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from gan.loop import Progress
from synthwave.settings import TrainSettings

INLINE_WIDTH = 768  # inlined images are shrunk to keep the artifact small in the database


def image_url(path: Path, settings: TrainSettings) -> str:
    if settings.artifact_base_url:
        relative = path.resolve().relative_to(settings.run_dir.resolve()).as_posix()
        return f"{settings.artifact_base_url.rstrip('/')}/{relative}"
    image = Image.open(path).convert("RGB")
    if image.width > INLINE_WIDTH:
        image = image.resize((INLINE_WIDTH, round(image.height * INLINE_WIDTH / image.width)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class TrainingArtifacts:
    """The callback the training loop reports to."""

    def __init__(self, settings: TrainSettings):
        self.settings = settings
        self.key = re.sub(r"[^a-z0-9]+", "-", settings.run_dir.resolve().name.lower()).strip("-") or "run"
        self.progress = create_progress_artifact(0.0, description=f"Training steps of {settings.run_dir}")

    def __call__(self, progress: Progress) -> None:
        update_progress_artifact(self.progress, 100.0 * progress.step / progress.total)
        if progress.grid is not None:
            create_image_artifact(
                image_url(progress.grid, self.settings),
                key=f"{self.key}-samples",
                description=f"Samples from the fixed noise at step {progress.step}",
            )
        if progress.history is not None:
            create_image_artifact(
                image_url(progress.run.loss_plot, self.settings),
                key=f"{self.key}-loss-plot",
                description=f"Losses up to step {progress.step}",
            )
            recent = progress.history.tail(10).round(4)
            create_table_artifact(
                recent.to_dict(orient="records"), key=f"{self.key}-losses", description="Most recent steps"
            )

    def summary(self, progress: Progress) -> None:
        run = progress.run
        checkpoints = sorted(run.checkpoints.glob("ckpt-*.index"))
        last = progress.history.iloc[-1] if progress.history is not None and len(progress.history) else None
        lines = [
            f"# Training run `{run.root.resolve()}`",
            f"Step **{progress.step}** of {progress.total}.",
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
            lines += ["", f"Last step: g_loss {last.g_loss:.4f}, d_loss {last.d_loss:.4f}, "
                      f"D(x) {last.d_real:.3f}, D(G(z)) {last.d_fake:.3f}, {last.images_per_s:.1f} images/s."]
        create_markdown_artifact("\n".join(lines), key=f"{self.key}-summary", description="Training summary")
