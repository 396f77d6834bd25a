"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

A port of the official `DiffAugment_tf.py` (github.com/mit-han-lab/data-efficient-gans):
the same three policies, magnitudes and order, for NHWC images in [-1, 1]. D sees only
augmented images, real and fake alike, and G's loss goes through the same augmentation,
so D cannot overfit a few thousand frames while G is still pushed towards unaugmented
images. Every op is differentiable with respect to the images.

Two changes, neither altering the result: randomness comes from a `tf.random.Generator`
(saved in the checkpoint, so a resume draws the same augmentations) instead of global
`tf.random.uniform`, and the cutout mask is built with comparisons instead of
`scatter_nd` over clipped coordinates (the same rectangle, clipped to the image).
"""

from __future__ import annotations

import tensorflow as tf

def _uniform(rng: tf.random.Generator, batch: tf.Tensor) -> tf.Tensor:
    return rng.uniform(tf.stack([batch, 1, 1, 1]))


def brightness(x: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    return x + (_uniform(rng, tf.shape(x)[0]) - 0.5)


def saturation(x: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    return (x - mean) * (_uniform(rng, tf.shape(x)[0]) * 2.0) + mean


def contrast(x: tf.Tensor, rng: tf.random.Generator) -> tf.Tensor:
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (_uniform(rng, tf.shape(x)[0]) + 0.5) + mean


def translation(x: tf.Tensor, rng: tf.random.Generator, divisor: int = 8) -> tf.Tensor:
    """Shift each image by up to 1/`divisor` of each side, filling with zeros (gathers: differentiable)."""
    batch, size = tf.shape(x)[0], tf.shape(x)[1:3]
    shift = size // divisor
    dy = rng.uniform(tf.stack([batch, 1]), -shift[0], shift[0] + 1, dtype=tf.int32)
    dx = rng.uniform(tf.stack([batch, 1]), -shift[1], shift[1] + 1, dtype=tf.int32)
    rows = tf.clip_by_value(tf.range(size[0])[None, :] + dy + 1, 0, size[0] + 1)
    cols = tf.clip_by_value(tf.range(size[1])[None, :] + dx + 1, 0, size[1] + 1)
    x = tf.gather_nd(tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0]]), rows[..., None], batch_dims=1)
    x = tf.transpose(x, [0, 2, 1, 3])
    x = tf.gather_nd(tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0]]), cols[..., None], batch_dims=1)
    return tf.transpose(x, [0, 2, 1, 3])


def cutout(x: tf.Tensor, rng: tf.random.Generator, divisor: int = 2) -> tf.Tensor:
    """Zero one rectangle of 1/`divisor` of each side per image, centred anywhere in the image."""
    batch, size = tf.shape(x)[0], tf.shape(x)[1:3]
    cut = size // divisor
    top = rng.uniform(tf.stack([batch, 1, 1]), 0, size[0] + (1 - cut[0] % 2), dtype=tf.int32) - cut[0] // 2
    left = rng.uniform(tf.stack([batch, 1, 1]), 0, size[1] + (1 - cut[1] % 2), dtype=tf.int32) - cut[1] // 2
    rows, cols = tf.range(size[0])[None, :, None], tf.range(size[1])[None, None, :]
    inside = (rows >= top) & (rows < top + cut[0]) & (cols >= left) & (cols < left + cut[1])
    return x * tf.cast(~inside, x.dtype)[..., None]


_FUNCTIONS = {"color": (brightness, saturation, contrast), "translation": (translation,), "cutout": (cutout,)}


def diff_augment(x: tf.Tensor, policy: str, rng: tf.random.Generator) -> tf.Tensor:
    """x augmented by each policy of the comma-separated `policy` in turn; "" returns x."""
    for name in filter(None, policy.split(",")):
        for function in _FUNCTIONS[name]:
            x = function(x, rng)
    return x
