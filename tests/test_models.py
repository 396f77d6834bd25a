"""gan.models: the upsampling plan and model shapes for any image size, on tiny models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan.layers import FusedBatchNorm, MinibatchStdDev, Uint16Dropout
from gan.models import build_discriminator, build_generator, upsampling_plan


@pytest.mark.parametrize(
    ("height", "width", "max_blocks", "plan"),
    [
        (180, 320, 4, (2, 45, 80)),
        (32, 56, 4, (3, 4, 7)),
        (96, 160, 4, (4, 6, 10)),
        (360, 640, 4, (3, 45, 80)),
        (96, 160, 2, (2, 24, 40)),
    ],
)
def test_upsampling_plan(height: int, width: int, max_blocks: int, plan: tuple[int, int, int]) -> None:
    assert upsampling_plan(height, width, max_blocks) == plan


@pytest.mark.parametrize(("height", "width"), [(45, 80), (180, 321)])
def test_odd_side_names_the_size(height: int, width: int) -> None:
    with pytest.raises(ValueError, match=f"{height}x{width}.*odd"):
        upsampling_plan(height, width, 4)


def test_too_small_base_names_the_size() -> None:
    with pytest.raises(ValueError, match="16x16.*1x1.*max_blocks"):
        upsampling_plan(16, 16, 4)
    assert upsampling_plan(16, 16, 3) == (3, 2, 2)


@pytest.mark.parametrize(("shape", "max_blocks"), [((32, 56, 3), 4), ((16, 16, 3), 3), ((24, 40, 3), 2)])
def test_generator_and_discriminator_shapes(shape: tuple[int, int, int], max_blocks: int) -> None:
    generator = build_generator(shape, latent_dim=8, filters=32, max_blocks=max_blocks, seed=0)
    discriminator = build_discriminator(shape, filters=8, max_blocks=max_blocks, seed=0)
    images = generator(tf.random.normal([3, 8], stddev=50.0), training=False)
    assert images.shape == (3, *shape) and images.dtype == tf.float32
    assert np.abs(images.numpy()).max() <= 1.0  # tanh, even for far-out noise
    logits = discriminator(images, training=True)
    assert logits.shape == (3, 1) and logits.dtype == tf.float32


def test_mixed_precision_keeps_float32_outputs() -> None:
    generator = build_generator((16, 16, 3), 8, 32, 2, seed=0, dtype="mixed_bfloat16")
    discriminator = build_discriminator((16, 16, 3), 8, 2, seed=0, dtype="mixed_bfloat16")
    assert generator.layers[1].compute_dtype == "bfloat16" and generator.layers[1].variable_dtype == "float32"
    images = generator(tf.random.normal([2, 8]))
    assert images.dtype == tf.float32
    assert discriminator(images).dtype == tf.float32


def test_seed_fixes_the_initial_weights() -> None:
    def weights(seed: int) -> list[np.ndarray]:
        return build_generator((16, 16, 3), 8, 32, 2, seed=seed).get_weights()

    first, again, other = weights(1), weights(1), weights(2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16", "mixed_float16"])
def test_spectral_norm_discriminator(dtype: str | None) -> None:
    def build(seed: int) -> keras.Model:
        return build_discriminator((16, 16, 3), 8, 2, seed=seed, dtype=dtype, spectral_norm=True)

    discriminator = build(0)
    normed = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(normed) == 3 and all(layer.vector_u.dtype == "float32" for layer in normed)
    images = tf.random.normal([2, 16, 16, 3])
    with tf.GradientTape() as tape:
        logits = discriminator(images, training=True)
    assert logits.dtype == tf.float32
    assert all(g is not None for g in tape.gradient(logits, discriminator.trainable_variables))
    # The power iteration's start vectors are weights, seeded like the kernels.
    same, other = build(0), build(1)
    assert all(np.array_equal(x, y) for x, y in zip(build(0).get_weights(), same.get_weights(), strict=True))
    assert not np.array_equal(same.layers[1].vector_u.numpy(), other.layers[1].vector_u.numpy())


@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
def test_minibatch_std_lets_d_tell_a_uniform_batch_from_a_varied_one(dtype: str | None) -> None:
    image, other = tf.random.normal([1, 16, 16, 3], seed=1), tf.random.normal([1, 16, 16, 3], seed=2)
    uniform, varied = tf.concat([image, image], 0), tf.concat([image, other], 0)
    for minibatch_std in (False, True):
        discriminator = build_discriminator((16, 16, 3), 8, 2, 0.0, seed=0, dtype=dtype, minibatch_std=minibatch_std)
        first = [float(discriminator(pair, training=True)[0, 0]) for pair in (uniform, varied)]
        # The same image gets another logit only when D sees the rest of its batch.
        assert (first[0] != first[1]) is minibatch_std
    layer = next(layer for layer in discriminator.layers if isinstance(layer, MinibatchStdDev))
    features = tf.random.normal([4, 3, 5, 2])
    spread = layer(features)[..., -1].numpy()
    np.testing.assert_allclose(spread, np.std(features.numpy(), axis=0).mean(), rtol=2e-2 if dtype else 1e-5)
    assert np.allclose(layer(tf.concat([features[:1]] * 4, 0))[..., -1], 0.0, atol=1e-3)


@pytest.mark.parametrize("rate", [0.5, 0.3])
def test_dropout_draws_keras_bernoulli_mask_and_its_gradient(rate: float) -> None:
    layer = Uint16Dropout(rate, seed=7)
    x = tf.random.uniform([8, 12, 20, 33], 1.0, 2.0)  # odd channels: the last 16-bit draw is cut off
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    kept = y.numpy() != 0
    n = kept.size
    assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)  # binomial, 4 sigma
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / (1 - rate), rtol=1e-6)
    # The gradient is the mask itself: 1 / (1 - rate) where kept, 0 where dropped.
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), kept / (1 - rate), rtol=1e-6)
    # Each channel, also the last, drops at the rate: the draws are not shared across channels.
    assert abs(kept[..., -1].mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / kept[..., -1].size)
    assert np.array_equal(layer(x, training=False), x)
    # Seeded: one seed, one sequence of masks; a call draws a new one.
    again = Uint16Dropout(rate, seed=7)
    assert np.array_equal(again(x, training=True), y) and not np.array_equal(again(x, training=True), y)


@pytest.mark.parametrize("shape", [(16, 6, 5, 8), (16, 12)])
@pytest.mark.parametrize("dtype", [None, "mixed_bfloat16"])
def test_fused_batch_norm_is_keras_batch_norm(shape: tuple[int, ...], dtype: str | None, tmp_path) -> None:
    """Outputs, gradients and moving statistics of Keras' layer, in training and inference, from one
    set of weights: a checkpoint of either restores into the other."""
    keras_bn, fused_bn = keras.layers.BatchNormalization(dtype=dtype), FusedBatchNorm(dtype=dtype)
    x = tf.random.stateless_normal(shape, seed=(1, 2)) * 3.0 + 1.0
    keras_bn.build(x.shape)
    for variable, value in zip(keras_bn.weights, (1.5, -0.5, 0.3, 2.0), strict=True):  # gamma, beta, mean, var
        variable.assign(tf.fill(variable.shape, value) + tf.range(variable.shape[0], dtype=tf.float32) / 10)
    path = tf.train.Checkpoint(layer=keras_bn).write(str(tmp_path / "bn"))
    fused_bn.build(x.shape)
    tf.train.Checkpoint(layer=fused_bn).read(path).assert_consumed()
    results = []
    for layer in (keras_bn, fused_bn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.random.stateless_normal(shape, seed=(3, 4)))
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append([y, *grads, *layer.non_trainable_weights, layer(x, training=False)])
    assert results[1][0].dtype == results[0][0].dtype == (tf.bfloat16 if dtype else tf.float32)
    tolerance = 2e-2 if dtype else 1e-4
    for ours, theirs in zip(results[1], results[0], strict=True):
        np.testing.assert_allclose(np.float32(ours), np.float32(theirs), rtol=tolerance, atol=tolerance)
