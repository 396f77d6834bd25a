"""gan/phases.py: the phase-wise input gradient is TensorFlow's, to float32 rounding, to any order."""

import numpy as np
import pytest
import tensorflow as tf

from gan.models import build_discriminator
from gan.phases import MIN_CHANNELS, PhaseConv2D, strided_conv, transposed_conv


def _close(got: tf.Tensor, want: tf.Tensor) -> None:
    scale = float(tf.reduce_max(tf.abs(want)))
    assert scale > 0
    np.testing.assert_allclose(got.numpy() / scale, want.numpy() / scale, atol=2e-6)


@pytest.mark.parametrize("shape", [(2, 4, 6, 3, 5), (3, 8, 4, 16, 8), (1, 2, 2, 1, 1)])
def test_transposed_conv_is_conv2d_transpose(shape):
    batch, h, w, channels, filters = shape
    rng = np.random.default_rng(0)
    dy = tf.constant(rng.normal(size=(batch, h, w, filters)), tf.float32)
    kernel = tf.constant(rng.normal(size=(4, 4, channels, filters)), tf.float32)
    want = tf.nn.conv2d_transpose(dy, kernel, [batch, 2 * h, 2 * w, channels], 2, "SAME")
    _close(transposed_conv(dy, kernel), want)


def _gradients(conv, x, kernel):
    """First gradients of a loss of conv(x, kernel), and the gradient of an R1-like penalty on them."""
    with tf.GradientTape() as outer:
        outer.watch(kernel)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(tf.sin(y))
        dx, dkernel = tape.gradient(loss, [x, kernel])
        penalty = tf.reduce_sum(tf.square(dx))
    return dx, dkernel, outer.gradient(penalty, kernel)


def test_strided_conv_gradients_match_tensorflow_to_second_order():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 8, 12, 6)), tf.float32)
    kernel = tf.constant(rng.normal(size=(4, 4, 6, 10)) * 0.1, tf.float32)
    _close(strided_conv(x, kernel), tf.nn.conv2d(x, kernel, 2, "SAME"))
    reference = _gradients(lambda a, b: tf.nn.conv2d(a, b, 2, "SAME"), x, kernel)
    for got, want in zip(_gradients(tf.function(strided_conv), x, kernel), reference):
        _close(got, want)


def test_discriminator_with_phase_gradients_is_the_same_function():
    shape = (16, 16, 3)
    plain = build_discriminator(shape, MIN_CHANNELS // 2, 2, 0.0, seed=3)
    phased = build_discriminator(shape, MIN_CHANNELS // 2, 2, 0.0, seed=3, phase_gradients=True)
    assert sum(isinstance(layer, PhaseConv2D) for layer in phased.layers) == 2  # 128 filters as usual, 256 by phases
    images = tf.random.stateless_uniform([4, *shape], seed=(0, 1), minval=-1.0, maxval=1.0)
    results = []
    for model in (plain, phased):
        with tf.GradientTape() as tape:
            tape.watch(images)
            logits = model(images, training=True)
        results.append((logits, *tape.gradient(logits, [images, *model.trainable_variables])))
    for got, want in zip(results[1], results[0]):
        _close(got, want)


def test_phase_conv_refuses_other_kernels():
    with pytest.raises(ValueError, match="4x4 stride-2"):
        PhaseConv2D(8, 3, strides=2, padding="same").build((None, 8, 8, 3))


def test_checkpoints_restore_across_phase_gradients(tmp_path):
    """Runs saved before phases (or on a GPU) resume with them, and back: the weights are a Conv2D's."""
    plain = build_discriminator((16, 16, 3), MIN_CHANNELS, 1, seed=1)
    phased = build_discriminator((16, 16, 3), MIN_CHANNELS, 1, seed=2, phase_gradients=True)
    assert not np.array_equal(plain.weights[0].numpy(), phased.weights[0].numpy())
    path = tf.train.Checkpoint(discriminator=plain).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(discriminator=phased).read(path).assert_consumed()
    for restored, saved in zip(phased.weights, plain.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
