"""gan.metrics on real video frames: SWD's known cases, any image size, bad input, the MS-SSIM collapse check."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from gan.metrics import (
    from_uint8,
    laplacian_pyramid,
    mode_collapse,
    ms_ssim_diversity,
    ms_ssim_scales,
    sliced_wasserstein,
)
from tests.loopback import SAMPLE_VIDEOS


def _read(name: str, every: int) -> list[np.ndarray]:
    """Every `every`-th frame, area-resized to 180x320, as RGB."""
    capture, frames, index = cv2.VideoCapture(str(SAMPLE_VIDEOS / name)), [], 0
    while capture.grab():
        if index % every == 0:
            ok, frame = capture.retrieve()
            assert ok, f"{name}: frame {index} did not decode"
            frames.append(cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)[..., ::-1])
        index += 1
    return frames


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """129 uint8 RGB frames of the three sample videos, shuffled (one fixed order)."""
    if not (SAMPLE_VIDEOS / "bottle-detection.mp4").is_file():
        pytest.skip(f"sample videos not found at {SAMPLE_VIDEOS}")
    frames = _read("bottle-detection.mp4", 16) + _read("milk.mkv", 2) + _read("book.mkv", 4)
    return np.stack(frames)[np.random.default_rng(0).permutation(len(frames))]


def resized(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    return from_uint8(np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]))


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(image, (0, 0), sigma) for image in images]) if sigma else images.copy()


@pytest.fixture(scope="module")
def real(frames: np.ndarray) -> np.ndarray:
    return resized(frames[:48], 64, 112)


def test_identical_sets_score_zero_at_every_level(real: np.ndarray) -> None:
    swd = sliced_wasserstein(real, real.copy())
    assert swd.sizes == ((64, 112), (32, 56), (16, 28))
    assert swd.levels == (0.0, 0.0, 0.0) and swd.mean == 0.0


def test_shuffled_pixels_score_far_above_a_noised_copy(real: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    shuffled = np.stack([rng.permutation(image.reshape(-1, 3)).reshape(image.shape) for image in real])
    noised = np.clip(real + rng.normal(0.0, 0.01, real.shape).astype(np.float32), -1.0, 1.0)
    far, near = sliced_wasserstein(real, shuffled), sliced_wasserstein(real, noised)
    assert all(f > n for f, n in zip(far.levels, near.levels, strict=True))
    assert far.mean > 10 * near.mean > 0


def test_swd_falls_as_the_blur_is_reduced(real: np.ndarray) -> None:
    means = [sliced_wasserstein(real, blurred(real, sigma)).mean for sigma in (4, 2, 1, 0)]
    assert means[0] > means[1] > means[2] > means[3] == 0.0, means


@pytest.mark.parametrize(
    ("height", "width", "sizes"),
    [
        (45, 80, ((45, 80), (23, 40))),
        (33, 57, ((33, 57), (17, 29))),
        (64, 112, ((64, 112), (32, 56), (16, 28))),
        (180, 320, ((180, 320), (90, 160), (45, 80), (23, 40))),
        (16, 16, ((16, 16),)),
    ],
)
def test_any_size_works_odd_and_non_square(
    frames: np.ndarray, height: int, width: int, sizes: tuple[tuple[int, int], ...]
) -> None:
    images = resized(frames[:8], height, width)
    swd = sliced_wasserstein(images, blurred(images, 2))
    assert swd.sizes == sizes
    assert all(np.isfinite(level) and level > 0 for level in swd.levels)
    assert swd.mean == pytest.approx(np.mean(swd.levels))


def test_pyramid_of_a_flat_image_is_flat_at_odd_sizes() -> None:
    # Catches border mistakes in down/upsampling: any would leave edges in the Laplacian levels.
    levels = laplacian_pyramid(np.full((2, 67, 37, 3), 0.3, np.float32))
    assert [level.shape[1:3] for level in levels] == [(67, 37), (34, 19)]
    assert np.abs(levels[0]).max() < 1e-6
    np.testing.assert_allclose(levels[-1], 0.3, atol=1e-6)


def test_a_seed_gives_one_result(real: np.ndarray) -> None:
    fake = blurred(real, 1)
    first = sliced_wasserstein(real, fake, seed=5)
    assert sliced_wasserstein(real, fake, seed=5) == first
    other = sliced_wasserstein(real, fake, seed=6)
    assert other != first and other.mean == pytest.approx(first.mean, rel=0.2)


def _images(count: int = 4, height: int = 32, width: int = 56, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (count, height, width, channels)).astype(np.float32)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sliced_wasserstein(_images(), _images(width=57)), "real images are 32x56 but fake ones 32x57"),
        (lambda: sliced_wasserstein(_images(1), _images(1)), "real: 1 image(s); pass at least 2"),
        (lambda: sliced_wasserstein(_images(), _images(3)), "real has 4 images but fake 3"),
        (lambda: sliced_wasserstein(_images()[0], _images()), "real: expected images of shape (N, H, W, 3)"),
        (lambda: sliced_wasserstein(_images(), _images(channels=4)), "fake: expected images of shape (N, H, W, 3)"),
        (lambda: sliced_wasserstein(_images(), _images()[..., 0]), "fake: expected images of shape (N, H, W, 3)"),
        (lambda: sliced_wasserstein(_images(), _images(height=8, width=8)), "both sides must be >= 16 px"),
        (lambda: sliced_wasserstein(np.zeros((4, 32, 32, 3), np.uint8), _images(width=32)), "from_uint8"),
        (lambda: sliced_wasserstein(_images() * 127.5 + 127.5, _images()), "real: values span"),
        (lambda: sliced_wasserstein(_images(), _images() * np.nan), "fake: contains NaN"),
        (lambda: sliced_wasserstein(_images(), _images(), directions=0), "directions is 0"),
        (lambda: ms_ssim_diversity(_images(1)), "images: 1 image(s); pass at least 2"),
        (lambda: mode_collapse(1.5, 0.3), "fake_ms_ssim is 1.5"),
        (lambda: mode_collapse(0.5, 0.3, margin=1.0), "margin is 1.0"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_ms_ssim_scales_follow_the_image_size() -> None:
    sizes = ((16, 16), (20, 40), (21, 40), (32, 56), (45, 80), (160, 320), (161, 161), (360, 640))
    assert [ms_ssim_scales(h, w) for h, w in sizes] == [1, 1, 2, 2, 3, 4, 5, 5]


@pytest.mark.parametrize(("height", "width", "pairs"), [(32, 56, 128), (180, 320, 32)])
def test_a_collapsed_generator_is_flagged_a_diverse_one_not(
    frames: np.ndarray, height: int, width: int, pairs: int
) -> None:
    images = resized(frames, height, width)
    real, diverse = images[::2], images[1::2]
    rng = np.random.default_rng(2)
    collapsed = np.clip(real[:1] + rng.normal(0.0, 0.01, real.shape).astype(np.float32), -1.0, 1.0)
    real_score = ms_ssim_diversity(real, pairs=pairs)
    collapsed_score, diverse_score = ms_ssim_diversity(collapsed, pairs=pairs), ms_ssim_diversity(diverse, pairs=pairs)
    assert collapsed_score > 0.95 and real_score < 0.8
    assert mode_collapse(collapsed_score, real_score)
    assert not mode_collapse(diverse_score, real_score)


def test_ms_ssim_diversity_is_deterministic_per_seed(real: np.ndarray) -> None:
    first = ms_ssim_diversity(real, pairs=16, seed=3)
    assert ms_ssim_diversity(real, pairs=16, seed=3) == first != ms_ssim_diversity(real, pairs=16, seed=4)
