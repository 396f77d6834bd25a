"""gan.augment: DiffAugment keeps shapes and ranges, is differentiable and reproducible for a seed."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from gan.augment import cutout, diff_augment, translation

SHAPE = (4, 16, 24, 3)


def images() -> tf.Tensor:
    return tf.random.stateless_uniform(SHAPE, seed=(1, 2), minval=-1.0, maxval=1.0)


def rng(seed: int = 0) -> tf.random.Generator:
    return tf.random.Generator.from_seed(seed)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_differentiable_and_same_shape(policy: str) -> None:
    x = images()
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = diff_augment(x, policy, rng())
        loss = tf.reduce_sum(y * tf.random.stateless_normal(SHAPE, seed=(3, 4)))
    gradient = tape.gradient(loss, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert gradient is not None and np.isfinite(gradient.numpy()).all() and np.abs(gradient.numpy()).sum() > 0
    assert not np.array_equal(y.numpy(), x.numpy())


def test_translation_and_cutout_keep_the_range_and_pixels() -> None:
    x = images()
    for function in (translation, cutout):
        y = function(x, rng()).numpy()
        assert -1 <= y.min() and y.max() <= 1
        # Every output pixel is an input pixel of the same image and channel, or zero.
        for image_in, image_out in zip(x.numpy(), y, strict=True):
            values = set(image_in.ravel().tolist()) | {0.0}
            assert set(image_out.ravel().tolist()) <= values


def test_cutout_zeroes_a_quarter_or_less() -> None:
    y = cutout(tf.ones(SHAPE), rng()).numpy()
    zeros = (y == 0).all(axis=-1).mean(axis=(1, 2))
    # An 8x12 rectangle on 16x24, clipped at the borders: 1/4 of the image at most.
    assert ((zeros > 0) & (zeros <= 0.25)).all()


def test_translation_shifts_by_at_most_an_eighth() -> None:
    x = tf.reshape(tf.range(16 * 24, dtype=tf.float32) + 1, (1, 16, 24, 1))
    for seed in range(8):
        y = translation(x, rng(seed)).numpy()[0, ..., 0]
        rows, cols = np.nonzero(y)
        dy, dx = set((y[rows, cols] - 1) // 24 - rows), set((y[rows, cols] - 1) % 24 - cols)
        assert len(dy) == len(dx) == 1 and abs(dy.pop()) <= 2 and abs(dx.pop()) <= 3


def test_same_seed_same_augmentation() -> None:
    policy = "color,translation,cutout"
    first, again = diff_augment(images(), policy, rng(5)), diff_augment(images(), policy, rng(5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, diff_augment(images(), policy, rng(6)))
    np.testing.assert_array_equal(diff_augment(images(), "", rng()), images())
