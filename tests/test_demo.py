"""The embedded default: procedural clips -> pipeline (ingest + train subflows), offline."""

import cv2
import numpy as np
import pandas as pd

from flows.demo import demo
from tasks.demo import render_demo_videos, render_frame


def test_frames_vary_over_time_and_between_clips():
    a, b, c = render_frame(90, 160, 0.0, 0), render_frame(90, 160, 1.0, 0), render_frame(90, 160, 0.0, 1)
    assert a.shape == (90, 160, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 1  # motion
    assert np.abs(a.astype(int) - c).mean() > 10  # another palette


def test_rendered_clips_are_readable_videos(tmp_path):
    paths = render_demo_videos(tmp_path, count=2, seconds=1, fps=10, size=(72, 128))
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        frames = 0
        while capture.read()[0]:
            frames += 1
        assert frames == 10
    assert render_demo_videos(tmp_path, count=2, seconds=1, fps=10, size=(72, 128)) == paths  # kept, not redone


def test_demo_runs_the_pipeline_end_to_end(prefect_server, tmp_path):
    run_dir = demo(tmp_path, steps=2)
    history = pd.read_parquet(f"{run_dir}/history.parquet")
    assert history["step"].tolist() == [1, 2]
    assert (tmp_path / "data" / "dataset.json").is_file()
    assert (tmp_path / "run" / "samples" / "latest.png").is_file()
