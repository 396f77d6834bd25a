"""The embedded default: procedural clips -> pipeline (ingest + train subflows), offline."""

import cv2
import numpy as np
import pandas as pd

from flows.demo import demo
from tasks.demo import render_demo_videos, render_frame, scene


def test_frames_vary_over_time_and_between_scenes_and_a_seed_repeats():
    a, b, c = render_frame(90, 160, 0.0, 0), render_frame(90, 160, 1.0, 0), render_frame(90, 160, 0.0, 1)
    assert a.shape == (90, 160, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b).mean() > 1  # motion
    assert np.abs(a.astype(int) - c).mean() > 10  # another scene
    assert np.array_equal(render_frame(90, 160, 0.0, 0), a)  # reproducible
    assert np.abs(render_frame(90, 160, 0.0, 0, seed=1).astype(int) - a).mean() > 10  # another seed, other scenes


def test_scenes_differ_in_palette_sun_ridges_grid_and_sky():
    scenes = [scene(index) for index in range(40)]
    for field in ("sky_low", "sun_low", "grid", "sun_radius", "sun_height", "grid_speed", "horizon"):
        assert len({getattr(s, field) for s in scenes}) >= 20, field
    assert {len(s.ridges) for s in scenes} == {0, 1, 2}
    assert {s.sky_detail for s in scenes} == {"stars", "clouds", "none"}


def test_rendered_clips_are_readable_videos(tmp_path):
    paths = render_demo_videos(tmp_path, count=2, shots=2, shot_frames=5, fps=10, size=(72, 128))
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        frames = []
        while (frame := capture.read())[0]:
            frames.append(frame[1].astype(int))
        assert len(frames) == 10
        steps = [np.abs(a - b).mean() for a, b in zip(frames, frames[1:])]
        assert steps.index(max(steps)) == 4  # the cut between the two shots is the largest change
    assert render_demo_videos(tmp_path, count=2, shots=2, shot_frames=5, fps=10, size=(72, 128)) == paths  # kept


def test_demo_runs_the_pipeline_end_to_end(prefect_server, tmp_path):
    run_dir = demo(tmp_path, steps=2)
    history = pd.read_parquet(f"{run_dir}/history.parquet")
    assert history["step"].tolist() == [1, 2]
    assert (tmp_path / "data" / "dataset.json").is_file()
    assert (tmp_path / "run" / "samples" / "latest.png").is_file()
