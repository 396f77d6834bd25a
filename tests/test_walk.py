"""The latent walk: slerp and easing, `synthwave walk` on a real tiny run, the train flow's walk artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.artifacts import run_key
from flows.ingest import ingest
from flows.train import train
from gan.images import to_uint8
from gan.loop import generate
from gan.step import DCGAN
from gan.walk import ease, latent_batches, restore, slerp, write_walk
from cli.main import main
from synthwave.settings import FrameSettings, IngestSettings, TrainSettings, WalkSettings
from tests.loopback import SAMPLE_VIDEOS


@pytest.fixture(scope="session")
def trained_run(prefect_server, tmp_path_factory) -> tuple[Path, object]:
    """A tiny run with a 1 s walk, trained by the real flows; the train flow run's id.

    A high, constant learning rate, so 8 steps make samples that depend visibly on the latent
    (an EMA generator would still be near its initial, almost constant, output).
    """
    if not (SAMPLE_VIDEOS / "milk.mkv").is_file():
        pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS}")
    root = tmp_path_factory.mktemp("walk")
    data = root / "data"
    sources = [str(SAMPLE_VIDEOS / name) for name in ("milk.mkv", "book.mkv")]
    ingest(sources, IngestSettings(data_dir=data, frames=FrameSettings(every=2, size=(32, 56), dedupe=False)))
    settings = TrainSettings(
        data_dir=data, run_dir=root / "run", steps=8, batch_size=16, g_filters=32, d_filters=16, g_lr=5e-3,
        d_lr=5e-3, sample_every=1, checkpoint_every=4, shuffle_buffer=64, walk_seconds=1.0, eval_every=0,
        ema_decay=None,  # 8 steps: an EMA of 0.99 would still be the initial generator
        lr_decay=0.0, label_smoothing=0.0, dropout=0.5,  # the article's recipe: 8 steps learn the most
    )  # fmt: skip
    state = train(settings, return_state=True)
    assert state.is_completed(), state.message
    return root / "run", state.state_details.flow_run_id


def read_video(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    return np.stack(frames).astype(np.int16)


def unit(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim))
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def test_slerp_endpoints_norm_and_midpoint() -> None:
    rng = np.random.default_rng(0)
    a, b = unit(rng, 5, 100), unit(rng, 5, 100)
    np.testing.assert_allclose(slerp(a, b, np.zeros(5)), a, atol=1e-12)
    np.testing.assert_allclose(slerp(a, b, np.ones(5)), b, atol=1e-12)
    for t in np.linspace(0, 1, 11):
        np.testing.assert_allclose(np.linalg.norm(slerp(a, b, np.full(5, t)), axis=-1), 1.0, rtol=1e-12)
    # The midpoint of a great circle is the normalised sum; a straight line's would be shorter.
    middle = slerp(a, b, np.full(5, 0.5))
    np.testing.assert_allclose(middle, (a + b) / np.linalg.norm(a + b, axis=-1, keepdims=True), atol=1e-12)
    x, y = np.eye(3)[0], np.eye(3)[1]
    np.testing.assert_allclose(slerp(x, y, 0.5), [2**-0.5, 2**-0.5, 0], atol=1e-12)
    np.testing.assert_allclose(slerp(x, y, 1 / 3), [np.cos(np.pi / 6), np.sin(np.pi / 6), 0], atol=1e-12)


def test_slerp_of_parallel_vectors_is_a_straight_line() -> None:
    a = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(slerp(a, 2 * a, 0.5), 1.5 * a)
    assert np.isfinite(slerp(np.zeros(3), a, 0.5)).all()


def test_ease_stops_at_both_ends() -> None:
    t = np.linspace(0, 1, 101)
    eased = ease(t)
    assert eased[0] == 0 and eased[-1] == 1 and np.all(np.diff(eased) >= 0)
    assert ease(np.array([0.01]))[0] < 0.01 and ease(np.array([0.5]))[0] == 0.5


def test_latents_come_in_batches_and_pass_through_random_points() -> None:
    settings = WalkSettings(run_dir="r", seconds=2.5, fps=10, segment_seconds=1.0, batch_size=7, seed=3)
    batches = list(latent_batches(settings, 16))
    assert [len(batch) for batch in batches] == [7, 7, 7, 4] and all(b.dtype == np.float32 for b in batches)
    path = np.concatenate(batches)
    points = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    np.testing.assert_allclose(path[[0, 10, 20]], points[:3], rtol=1e-6)  # each segment starts on a point
    steps = np.linalg.norm(np.diff(path, axis=0), axis=-1)
    assert steps.max() < 0.5 * np.linalg.norm(points[1] - points[0])


def test_walk_command_writes_a_smooth_video(trained_run, tmp_path: Path, capsys) -> None:
    run, _ = trained_run
    out = tmp_path / "walk.mp4"
    argv = ["walk", "--run-dir", str(run), "--out", str(out), "--seconds", "2", "--fps", "12", "--size", "64x112",
            "--segment-seconds", "1", "--seed", "5"]
    assert main(argv) == 0
    assert "24 frames, 112x64, 12 fps" in capsys.readouterr().out
    frames = read_video(out)
    assert frames.shape == (24, 64, 112, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["walk.mp4"]  # no temp file left

    def enlarged(images: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(i, (112, 64), interpolation=cv2.INTER_CUBIC) for i in to_uint8(images)])

    samples = enlarged(generate(run, count=8, seed=9)).astype(np.int16)
    random_pairs = np.abs(np.diff(samples, axis=0)).mean()
    neighbours = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert neighbours.max() > 0  # it moves
    assert neighbours.mean() < 0.3 * random_pairs, (neighbours.mean(), random_pairs)
    # It starts on the seed's first latent point, drawn by the run's generator: compared at 8x14,
    # above the MPEG-4 coding noise (as large as the differences between samples at full size).
    def coarse(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image.astype(np.uint8), (14, 8), interpolation=cv2.INTER_AREA).astype(np.int16)

    # Identified, not matched to a tolerance: after 8 steps samples differ little (less still in
    # bfloat16), so the frame must only be nearer its own latent's image than any other sample.
    start = np.random.default_rng(5).standard_normal((1, 100)).astype(np.float32)
    expected = coarse(enlarged(restore(run).sample(start).numpy())[0])
    first = coarse(cv2.cvtColor(frames[0].astype(np.uint8), cv2.COLOR_BGR2RGB))
    others = [np.abs(first - coarse(sample)).mean() for sample in samples]
    assert np.abs(first - expected).mean() < min(others), (np.abs(first - expected).mean(), others)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-dir", "{tmp}/nothing"], "run dir {tmp}/nothing not found"),
        (["--run-dir", "{tmp}/config-only"], "has no checkpoint yet: train first"),
        (["--run-dir", "{tmp}"], "has no config.json"),
        (["--size", "big"], "setting size: Value error, size 'big' is not HxW"),
        (["--size", "33x64"], "setting size: Value error, size 33x64 has an odd side"),
        (["--seconds", "0"], "setting seconds: Input should be greater than 0"),
        (["--fps", "-2"], "setting fps: Input should be greater than 0"),
        (["--out", "{tmp}/missing/w.mp4"], "output folder {tmp}/missing does not exist"),
        (["--out", "{tmp}/w.avi"], "setting out: Value error, {tmp}/w.avi is not an .mp4 file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained_run, tmp_path: Path, capsys, args, message) -> None:
    run, _ = trained_run
    (tmp_path / "config-only").mkdir()
    shutil.copy(run / "config.json", tmp_path / "config-only")
    argv = ["walk", "--run-dir", str(run), "--out", str(tmp_path / "w.mp4"), "--seconds", "0.2"]
    assert main(argv + [arg.format(tmp=tmp_path) for arg in args]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config-only"]  # nothing written


def test_missing_run_dir_flag_is_named(capsys) -> None:
    assert main(["walk"]) == 2
    assert "setting run_dir: Field required" in capsys.readouterr().err


def test_a_failed_walk_keeps_the_previous_video(trained_run, tmp_path: Path, monkeypatch) -> None:
    """Fault injection: the generator fails on the second batch, mid-video."""
    run, _ = trained_run
    out = tmp_path / "walk.mp4"
    out.write_bytes(b"the previous video")
    sample, calls = DCGAN.sample, []

    def failing(self, noise):
        calls.append(len(noise))
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return sample(self, noise)

    monkeypatch.setattr(DCGAN, "sample", failing)
    with pytest.raises(RuntimeError, match="device lost"):
        write_walk(WalkSettings(run_dir=run, out=out, seconds=1, fps=10, size=(32, 56), batch_size=4))
    assert out.read_bytes() == b"the previous video"
    assert [p.name for p in tmp_path.iterdir()] == ["walk.mp4"]


def test_train_flow_leaves_a_walk_and_its_artifacts(trained_run) -> None:
    run, flow_run_id = trained_run
    frames = read_video(run / "walk.mp4")
    assert frames.shape == (30, 32, 56, 3)  # walk_seconds 1 at 30 fps, the images' own size
    assert np.abs(frames[0] - frames[-1]).mean() > 0
    assert cv2.imread(str(run / "walk.png")).shape[0] == 32
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_key = {artifact.key: artifact for artifact in artifacts if artifact.key}
    key = run_key(TrainSettings(run_dir=run))
    note = by_key[f"{key}-walk"]
    assert note.type == "markdown" and str((run / "walk.mp4").resolve()) in note.data
    strip = by_key[f"{key}-walk-frames"]
    assert strip.type == "image" and strip.data.startswith("data:image/jpeg;base64,")
