"""The loss history: one row per step, rewritten atomically so pandas can read it any time.

Quality columns (SWD per Laplacian-pyramid level, finest first, their mean, MS-SSIM
diversity of the samples and of the held-out frames, the mode-collapse flag, empty before
`COLLAPSE_JUDGED_FROM` steps) hold a value only on evaluation steps: NaN / <NA>
elsewhere. A history written before they existed loads with them empty.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow

from synthwave.atomic import atomic_open

logger = logging.getLogger(__name__)

SWD_LEVELS = 4  # pyramid levels with a column; a smaller image leaves the coarsest ones NaN
COLUMNS = {
    "step": "int64",
    "epoch": "float64",
    "g_loss": "float32",
    "d_loss": "float32",
    "d_real": "float32",  # mean D(x)
    "d_fake": "float32",  # mean D(G(z))
    "images_per_s": "float32",
    "input_s": "float32",  # seconds the step waited for its batch (a large share: input-bound)
    "compute_s": "float32",  # seconds from the batch's arrival to the step's metrics
    "wall_time": "float64",  # seconds since the epoch
    "swd_mean": "float32",  # SWD of samples vs held-out frames, mean over levels: lower is better
    **{f"swd_l{level}": "float32" for level in range(SWD_LEVELS)},
    "ms_ssim": "float32",  # mean MS-SSIM between pairs of samples: higher is less diverse
    "ms_ssim_real": "float32",  # the same among the held-out frames: the diversity to match
    "mode_collapse": "boolean",
}


class History:
    """Rows buffered in memory; `flush()` writes the whole table to Parquet atomically.

    A whole rewrite keeps every version of the file a valid Parquet table; at a few
    hundred bytes per step it stays cheap for long runs.
    """

    def __init__(self, path: Path):
        self.path = path
        self.frame = _read(path).reindex(columns=list(COLUMNS))
        self._rows: list[dict] = []

    def truncate(self, last_step: int) -> None:
        """Forget steps after `last_step`: they are about to be trained again."""
        self.frame = self.frame[self.frame["step"] <= last_step]
        self._rows = [row for row in self._rows if row["step"] <= last_step]

    def append(self, row: dict) -> None:
        self._rows.append(row)

    def table(self) -> pd.DataFrame:
        if self._rows:
            # Typed before joining: an untyped flag column of NaN, 1.0 and True would not convert.
            new = pd.DataFrame(self._rows, columns=list(COLUMNS)).astype(COLUMNS)
            self.frame = new if self.frame.empty else pd.concat([self.frame.astype(COLUMNS), new], ignore_index=True)
            self._rows = []
        return self.frame.astype(COLUMNS)

    def flush(self) -> pd.DataFrame:
        table = self.table()
        with atomic_open(self.path, "wb") as handle:
            table.to_parquet(handle, index=False)
        return table


def _read(path: Path) -> pd.DataFrame:
    """The history on disk (empty if none). A damaged one (cut short, overwritten) is moved
    aside to `<name>.damaged` with a warning, and the run goes on: the checkpoint holds the
    step, so only the loss rows before it are lost, not the training."""
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        aside = path.with_name(f"{path.name}.damaged")
        os.replace(path, aside)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        logger.warning("%s is damaged (%s): moved to %s; the history goes on from the checkpoint", path, reason, aside)
        return pd.DataFrame()
