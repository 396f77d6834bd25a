"""Offline GAN quality metrics: sliced Wasserstein distance (SWD) and an MS-SSIM diversity check.

Both take images as float arrays (N, H, W, 3) in [-1, 1], the generator's output and what
`gan.data` yields; convert 0..255 uint8 frames with `from_uint8`. Any size works, odd and
non-square included, as long as both sides are >= 16 px.

SWD follows Karras et al. 2018 ("Progressive growing of GANs", metrics/sliced_wasserstein.py):
random 7x7x3 patches of each level of a Laplacian pyramid, compared by sorted random
projections, x 1e3 as the paper reports it, per level (finest first) and averaged; both sets
are sampled at the same patch positions, so identical sets score exactly 0. Pure numpy.
MS-SSIM (`tf.image.ssim_multiscale`, Wang et al. 2003) over random pairs of one set measures
its diversity (Odena et al. 2017): pairs of a collapsed generator's images are near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MIN_SIDE = 16  # the paper's coarsest SWD level; also fits MS-SSIM's 11 px filter
PATCH = 7
_MIN_STD = 1e-3  # 1/8 of an 8-bit grey level in [-1, 1]: a flatter channel's rounding noise is not blown up to std 1
_RANGE_SLACK = 1e-3  # float rounding around tanh's [-1, 1]
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, TF's default
_MS_SSIM_FILTER = 11


@dataclass(frozen=True)
class SWD:
    """SWD x 1e3 per pyramid level (finest first), each level's (height, width), and their mean."""

    levels: tuple[float, ...]
    sizes: tuple[tuple[int, int], ...]
    mean: float


def from_uint8(images: np.ndarray) -> np.ndarray:
    """0..255 uint8 pixels -> float32 in [-1, 1], the metrics' input (inverse of gan.images.to_uint8)."""
    return np.asarray(images, np.float32) / 127.5 - 1.0


def checked_images(name: str, images: np.ndarray) -> np.ndarray:
    """`images` as float32 (N, H, W, 3) in [-1, 1], or a one-line ValueError naming `name` and the fix."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: expected images of shape (N, H, W, 3), got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"{name}: {images.dtype} images; pass floats in [-1, 1] (0..255 pixels: gan.metrics.from_uint8)"
        )
    count, height, width, _ = images.shape
    if count < 2:
        raise ValueError(f"{name}: {count} image(s); pass at least 2")
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{name}: images are {height}x{width}; both sides must be >= {MIN_SIDE} px")
    if not np.isfinite(images).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    if low < -1 - _RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise ValueError(
            f"{name}: values span [{low:g}, {high:g}], expected [-1, 1] (0..255 pixels: gan.metrics.from_uint8)"
        )
    return images.astype(np.float32, copy=False)


def _along(array: np.ndarray, axis: int, start: int, stop: int, step: int = 1) -> np.ndarray:
    index = [slice(None)] * array.ndim
    index[axis] = slice(start, stop, step)
    return array[tuple(index)]


def _pad(array: np.ndarray, axis: int, width: int) -> np.ndarray:
    return np.pad(array, [(width, width) if a == axis else (0, 0) for a in range(array.ndim)], mode="reflect")


def _down(images: np.ndarray) -> np.ndarray:
    """Binomial blur (reflected borders) and keep even rows and columns: n -> ceil(n / 2)."""
    for axis in (1, 2):
        n = images.shape[axis]
        padded = _pad(images, axis, 2)
        taps = [_along(padded, axis, k, k + n, 2) for k in range(5)]
        images = (taps[0] + taps[4] + 4 * (taps[1] + taps[3]) + 6 * taps[2]) / np.float32(16)
    return images


def _up(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Back up to (height, width) by the same filter: even pixels 1-6-1 of the coarse ones, odd ones their mean."""
    for axis, size in ((1, height), (2, width)):
        n = images.shape[axis]
        padded = _pad(images, axis, 1)
        before, at, after = (_along(padded, axis, k, k + n) for k in range(3))
        even = (before + after + 6 * at) / np.float32(8)
        odd = (at + after) / np.float32(2)
        shape = list(images.shape)
        shape[axis] = 2 * n
        images = _along(np.stack((even, odd), axis=axis + 1).reshape(shape), axis, 0, size)
    return images


def laplacian_pyramid(images: np.ndarray) -> list[np.ndarray]:
    """Laplacian levels of (N, H, W, C) floats, finest first, down to the last shorter side >= 16 px."""
    gaussian = [np.asarray(images, np.float32)]
    while min(-(-side // 2) for side in gaussian[-1].shape[1:3]) >= MIN_SIDE:
        gaussian.append(_down(gaussian[-1]))
    finer = [level - _up(coarser, *level.shape[1:3]) for level, coarser in zip(gaussian, gaussian[1:])]
    return [*finer, gaussian[-1]]


def _descriptors(level: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """7x7 patches at the given top-left corners, normalised per channel over the set, flattened."""
    windows = sliding_window_view(level, (PATCH, PATCH), axis=(1, 2))  # a view: (N, H-6, W-6, C, 7, 7)
    patches = windows[np.arange(len(level))[:, None], rows, cols].reshape(-1, level.shape[-1], PATCH * PATCH)
    channels = np.moveaxis(patches, 1, 0).reshape(level.shape[-1], -1)  # contiguous rows: fast statistics
    mean = channels.mean(axis=1)
    std = np.sqrt(np.maximum(np.einsum("ij,ij->i", channels, channels) / channels.shape[1] - mean**2, 0.0))
    patches -= mean[:, None]
    patches /= np.maximum(std, _MIN_STD)[:, None]
    return patches.reshape(len(patches), -1)


def _sliced_distance(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, directions: int, repeats: int) -> float:
    """Mean over random unit directions of the 1-D Wasserstein distance between the projections."""
    total = 0.0
    for _ in range(repeats):  # one block of directions at a time bounds memory to (patches x directions)
        dirs = rng.standard_normal((a.shape[1], directions), dtype=np.float32)
        dirs /= np.linalg.norm(dirs, axis=0)
        # (directions, patches) rows: sorting in place along the contiguous last axis is twice as fast.
        proj_a, proj_b = dirs.T @ a.T, dirs.T @ b.T
        proj_a.sort(axis=1)
        proj_b.sort(axis=1)
        proj_a -= proj_b
        total += float(np.abs(proj_a, out=proj_a).mean())
    return total / repeats


def sliced_wasserstein(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    patches_per_image: int = 128,
    directions: int = 128,
    repeats: int = 4,
    seed: int = 0,
) -> SWD:
    """SWD x 1e3 between two equally many images of one size, floats in [-1, 1]; deterministic per seed."""
    real, fake = checked_images("real", real), checked_images("fake", fake)
    if real.shape[1:3] != fake.shape[1:3]:
        raise ValueError(
            f"real images are {real.shape[1]}x{real.shape[2]} but fake ones {fake.shape[1]}x{fake.shape[2]}; "
            "compare images of one size"
        )
    if len(real) != len(fake):
        raise ValueError(f"real has {len(real)} images but fake {len(fake)}; SWD compares sets of equal size")
    for name, value in (("patches_per_image", patches_per_image), ("directions", directions), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} is {value}; it must be >= 1")
    rng = np.random.default_rng(seed)
    levels, sizes = [], []
    for level_real, level_fake in zip(laplacian_pyramid(real), laplacian_pyramid(fake)):
        _, height, width, _ = level_real.shape
        rows = rng.integers(0, height - PATCH + 1, size=(len(real), patches_per_image))
        cols = rng.integers(0, width - PATCH + 1, size=(len(real), patches_per_image))
        a, b = _descriptors(level_real, rows, cols), _descriptors(level_fake, rows, cols)
        levels.append(1e3 * _sliced_distance(a, b, rng, directions, repeats))
        sizes.append((height, width))
    return SWD(levels=tuple(levels), sizes=tuple(sizes), mean=float(np.mean(levels)))


def ms_ssim_scales(height: int, width: int) -> int:
    """MS-SSIM scales that fit, at most 5: each halves the image and the coarsest needs the 11 px filter.

    TF pads an odd side before halving (n -> ceil(n / 2)), so all 5 scales need a shorter side >= 161.
    """
    side, scales = min(height, width), 1
    while scales < len(_MS_SSIM_WEIGHTS) and -(-side // 2) >= _MS_SSIM_FILTER:
        side, scales = -(-side // 2), scales + 1
    return scales


def ms_ssim_diversity(images: np.ndarray, *, pairs: int = 128, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of distinct images (1: all alike); floats in [-1, 1], deterministic per seed.

    Small images use the finest scales that fit (`ms_ssim_scales`) with Wang et al.'s weights for
    them renormalised to sum to 1, so a score stays a weighted geometric mean of per-scale terms.
    """
    images = checked_images("images", images)
    if pairs < 1:
        raise ValueError(f"pairs is {pairs}; it must be >= 1")
    import tensorflow as tf  # here, not at the top: SWD alone needs no TensorFlow (~800 MB)

    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(images), size=pairs)
    second = (first + rng.integers(1, len(images), size=pairs)) % len(images)  # never the same image
    weights = np.asarray(_MS_SSIM_WEIGHTS[: ms_ssim_scales(*images.shape[1:3])])
    # SSIM's luminance term is not shift-invariant: score in [0, 1] with max_val 1, as the paper's images.
    unit = (images + 1.0) / 2.0
    scores = tf.image.ssim_multiscale(
        unit[first], unit[second], max_val=1.0, power_factors=weights / weights.sum(), filter_size=_MS_SSIM_FILTER
    )
    return float(tf.reduce_mean(scores))


def mode_collapse(fake_ms_ssim: float, real_ms_ssim: float, margin: float = 0.5) -> bool:
    """True when generated pairs keep less than (1 - margin) of the real pairs' dissimilarity (1 - MS-SSIM).

    Relative, not absolute: frames of one video are alike (real MS-SSIM can be 0.9+), and a fixed
    "+0.1" could then never trigger. With the default 0.5, real 0.2 flags fake > 0.6 and real 0.8
    flags fake > 0.9; a collapsed generator scores ~0.95-1, a healthy one about the real value.
    """
    for name, value in (("fake_ms_ssim", fake_ms_ssim), ("real_ms_ssim", real_ms_ssim)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is {value}; an MS-SSIM is in [0, 1]")
    if not 0.0 < margin < 1.0:
        raise ValueError(f"margin is {margin}; it must be in (0, 1)")
    return 1.0 - fake_ms_ssim < (1.0 - margin) * (1.0 - real_ms_ssim)
