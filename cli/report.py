"""`synthwave report`: one HTML page about a training run, to read or to share.

The page is self-contained: images are inlined as base64 data URLs, so the one file can
be mailed, attached or put in a bucket and still shows everything. It reads only the run
directory (gan/run.py): config.json, history.parquet, the plots, the sample grids and
walk.mp4, each section saying so when its files are not there (a run still training, an
older run without the quality metrics). Everything read from those files is HTML-escaped:
a run directory is data, not markup.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from PIL import Image

from gan.run import RunDir
from gan.walk import FILENAME as WALK_FILENAME
from gan.walk import frame_strip
from synthwave.atomic import atomic_open
from synthwave.errors import UserError

GRIDS = 6  # sample grids shown, evenly spaced over the run, first and last included
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem;
       background: #14101f; color: #eee; }
h1, h2 { color: #ff71ce; } code, a { color: #01cdfe; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
td, th { border: 1px solid #443a5c; padding: 0.2rem 0.6rem; text-align: left; }
figure { display: inline-block; margin: 0.5rem; } img { max-width: 100%; }
img.pixels { image-rendering: pixelated; }  /* small generated images, enlarged: keep them crisp */
figcaption { color: #aaa; font-size: 0.9rem; } .missing { color: #aaa; font-style: italic; }
"""


class ReportError(UserError, ValueError):
    """The report cannot be written (no run directory, no output folder); says what to do."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _png_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _figure(url: str, caption: str, pixels: bool = False) -> str:
    extra = ' class="pixels"' if pixels else ""
    return f'<figure><img{extra} src="{url}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _table(rows: list[tuple[object, object]]) -> str:
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _settings(config: dict) -> str:
    rows = []
    for key, value in config.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        rows += [(f"{key}.{name}" if name else key, json.dumps(item)) for name, item in items]
    return _table(rows)


def _values(row: pd.Series) -> str:
    """Every column with a value, so metrics added later show up without changes here."""
    shown = row.drop("wall_time", errors="ignore").dropna()
    return _table([(name, f"{v:.4g}" if isinstance(v, float | np.floating) else v) for name, v in shown.items()])


def _progress(run: RunDir) -> str:
    if not run.history.exists():
        return _missing("No history.parquet yet.")
    history = pd.read_parquet(run.history)
    if history.empty:
        return _missing("history.parquet has no step yet.")
    rows = [("Last step", history.iloc[-1])]
    # Quality columns hold values on evaluation steps only; older runs have none.
    if "swd_mean" in history and history["swd_mean"].notna().any() and pd.isna(history["swd_mean"].iloc[-1]):
        rows.append(("Last evaluation", history[history["swd_mean"].notna()].iloc[-1]))
    return "".join(f"<p>{title}:</p>{_values(row)}" for title, row in rows)


def _curves(run: RunDir) -> str:
    plots = [(run.loss_plot, "Losses and discriminator outputs"), (run.quality_plot, "Sample quality: SWD, MS-SSIM")]
    shown = [_figure(_png_url(path.read_bytes()), caption) for path, caption in plots if path.exists()]
    return "".join(shown) or _missing("No plots yet.")


def _step(path: Path) -> int | None:
    match = re.fullmatch(r"grid-(\d+)\.png", path.name)
    return int(match.group(1)) if match else None


def _samples(run: RunDir) -> str:
    grids = sorted((step, path) for path in run.samples.glob("grid-*.png") if (step := _step(path)) is not None)
    if not grids:
        return _missing("No sample grids yet.")
    picks = sorted(set(np.linspace(0, len(grids) - 1, min(GRIDS, len(grids))).round().astype(int).tolist()))
    return "".join(_figure(_png_url(grids[i][1].read_bytes()), f"step {grids[i][0]}", pixels=True) for i in picks)


def _walk(run: RunDir, out: Path) -> str:
    video = run.root / WALK_FILENAME
    if not video.exists():
        return _missing(f"No {WALK_FILENAME}: make one with `synthwave walk --run-dir {run.root} --out {video}`.")
    buffer = io.BytesIO()
    Image.fromarray(frame_strip(video)).save(buffer, format="PNG")
    # Relative, so the link survives moving the run directory with its report.
    link = quote(Path(os.path.relpath(video.resolve(), out.parent.resolve())).as_posix())
    return (_figure(_png_url(buffer.getvalue()), f"frames evenly spaced over {WALK_FILENAME}", pixels=True)
            + f'<p>The video: <a href="{_e(link)}">{WALK_FILENAME}</a> (MPEG-4: VLC, mpv, QuickTime).</p>')


def render(run: RunDir, out: Path) -> str:
    """The page, as text."""
    config = run.load_config()
    sections = [
        ("settings", "Settings", _settings(config)),
        ("progress", "Progress", _progress(run)),
        ("curves", "Curves", _curves(run)),
        ("samples", "Samples over time", _samples(run)),
        ("walk", "Latent walk", _walk(run, out)),
    ]
    body = "".join(f'<section id="{key}"><h2>{title}</h2>{content}</section>' for key, title, content in sections)
    name = _e(run.root.resolve().name)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Run {name}</title>'
            f"<style>{STYLE}</style></head><body><h1>Training run <code>{name}</code></h1>"
            f"<p><code>{_e(run.root.resolve())}</code></p>{body}</body></html>\n")


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of `run_dir` to `out` (default run_dir/report.html), atomically."""
    if not run_dir.is_dir():
        raise ReportError(f"run dir {run_dir} not found: give --run-dir a training run directory")
    out = out or run_dir / "report.html"
    if not out.parent.is_dir():
        raise ReportError(f"output folder {out.parent} does not exist: create it or give another --out")
    page = render(RunDir(run_dir), out)
    with atomic_open(out, "w") as handle:
        handle.write(page)
    return out
