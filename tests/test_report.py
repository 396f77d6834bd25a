"""`synthwave report` on a real tiny run: every section, inlined images, escaping, older runs, errors."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli.main import main
from tests.test_walk import trained_run  # noqa: F401  (session fixture: one tiny training for both files)

HOSTILE = '<script>alert("x")</script>&'


def copy_run(trained_run: tuple[Path, object], where: Path) -> Path:
    """The run's files a report reads, in a folder the test may change."""
    return Path(shutil.copytree(trained_run[0], where, ignore=shutil.ignore_patterns("checkpoints", "tensorboard")))


def images(page: str) -> list[Image.Image]:
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def test_report_has_every_section(trained_run, tmp_path: Path, capsys) -> None:  # noqa: F811
    run = copy_run(trained_run, tmp_path / "run")
    (tmp_path / "share").mkdir()
    out = tmp_path / "share" / "report.html"
    assert main(["report", "--run-dir", str(run), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()

    for section in ("settings", "progress", "curves", "samples", "walk"):
        assert f'<section id="{section}">' in page
    assert "<th>model_settings.latent_dim</th><td>100</td>" in page and "<th>image_shape</th>" in page
    assert "<th>step</th><td>8</td>" in page and "<th>g_loss</th>" in page
    # Nine grids (steps 0..8): six shown, evenly spaced, first and last included.
    assert re.findall(r"<figcaption>step (\d+)</figcaption>", page) == ["0", "2", "3", "5", "6", "8"]
    shown = images(page)
    assert len(shown) == 1 + 6 + 1  # loss plot, grids, walk strip (no quality plot: evaluation was off)
    assert shown[0].size == Image.open(run / "loss.png").size
    assert all(image.size == Image.open(run / "samples" / "grid-00000000.png").size for image in shown[1:7])
    strip = np.asarray(shown[-1])
    assert strip.shape == (32, 8 * 56, 3) and strip.std() > 0  # 8 frames of the 32x56 walk
    link = re.search(r'<a href="([^"]+)">walk.mp4</a>', page).group(1)
    assert (out.parent / unquote(link)).resolve() == (run / "walk.mp4").resolve()
    assert not list((tmp_path / "share").glob(".*"))  # no temp file left

    assert main(["report", "--run-dir", str(run)]) == 0  # default: beside the run's files
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 8


def test_report_escapes_what_it_reads(trained_run, tmp_path: Path) -> None:  # noqa: F811
    run = copy_run(trained_run, tmp_path / HOSTILE.replace("/", ""))
    config = json.loads((run / "config.json").read_text())
    config["model_settings"]["note"] = HOSTILE
    (run / "config.json").write_text(json.dumps(config))
    history = pd.read_parquet(run / "history.parquet")
    history["<b>bold</b>"] = 1.0
    history.to_parquet(run / "history.parquet")

    assert main(["report", "--run-dir", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<script>" not in page and "<b>" not in page
    assert html.escape(json.dumps(HOSTILE)) in page  # settings are shown as JSON values
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<title>Run &lt;script&gt;alert(&quot;x&quot;)&lt;script&gt;&amp;</title>" in page


def test_report_of_an_older_run_and_of_one_with_quality_metrics(trained_run, tmp_path: Path) -> None:  # noqa: F811
    old = copy_run(trained_run, tmp_path / "old")
    (old / "walk.mp4").unlink()
    history = pd.read_parquet(old / "history.parquet")
    history[[c for c in history if not c.startswith(("swd", "ms_ssim", "mode"))]].to_parquet(old / "history.parquet")
    assert main(["report", "--run-dir", str(old)]) == 0
    page = (old / "report.html").read_text()
    assert "swd_mean" not in page and "Sample quality" not in page
    assert "No walk.mp4: make one with `synthwave walk" in page

    new = copy_run(trained_run, tmp_path / "new")
    history = pd.read_parquet(new / "history.parquet")
    history["swd_mean"] = np.where(history["step"] % 4 == 0, 0.5 / history["step"].clip(lower=1), np.nan)
    history.loc[history["step"] == 8, "swd_mean"] = np.nan  # evaluated at 4, not at the last step
    history.to_parquet(new / "history.parquet")
    shutil.copy(new / "loss.png", new / "quality.png")
    assert main(["report", "--run-dir", str(new)]) == 0
    page = (new / "report.html").read_text()
    assert "Sample quality" in page and len(images(page)) == 1 + 1 + 6 + 1
    evaluation = page.split("<p>Last evaluation:</p>")[1]
    assert evaluation.startswith("<table><tr><th>step</th><td>4</td>")
    assert "<th>swd_mean</th><td>0.125</td>" in evaluation


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-dir", "{tmp}/nothing"], "run dir {tmp}/nothing not found"),
        (["--run-dir", "{tmp}"], "has no config.json: it is not a training run directory"),
        (["--run-dir", "{run}", "--out", "{tmp}/missing/r.html"], "output folder {tmp}/missing does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained_run, tmp_path: Path, capsys, args, message) -> None:  # noqa: F811
    run, _ = trained_run
    assert main(["report", *(arg.format(tmp=tmp_path, run=run) for arg in args)]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())
