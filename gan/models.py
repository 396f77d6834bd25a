"""The DCGAN of the article (Radford et al. 2015, as in the TensorFlow DCGAN tutorial), for any image size.

The generator upsamples a small base feature map by 2 per block and the discriminator
mirrors it, so an image size only has to be divisible by 2**blocks: 180x320 trains with 2
blocks from 45x80, 96x160 with 4 from 6x10. Kernels are 4x4, divisible by the stride, so
transposed convolutions overlap evenly. Weights start from N(0, 0.02) as in the DCGAN
paper, each layer with its own seed derived from `seed`, so two builds with one seed are
identical without touching global RNG state. `dtype` is a Keras dtype policy
("mixed_float16", "mixed_bfloat16") for every layer except the outputs, which stay float32:
tanh images and D's logits feed float32 losses. Why these choices: docs/training.md,
"Inside the model and the step".
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

MIN_BASE = 2  # below a 2x2 base the first block has nothing spatial to learn


def upsampling_plan(height: int, width: int, max_blocks: int) -> tuple[int, int, int]:
    """(blocks, base_h, base_w): as many 2x blocks as both sides allow, at most `max_blocks`."""
    blocks = 0
    while blocks < max_blocks and height % 2 ** (blocks + 1) == 0 and width % 2 ** (blocks + 1) == 0:
        blocks += 1
    if blocks == 0:
        raise ValueError(f"image size {height}x{width} has an odd side: the GAN needs both sides even")
    base_h, base_w = height >> blocks, width >> blocks
    if min(base_h, base_w) < MIN_BASE:
        raise ValueError(
            f"image size {height}x{width} with {blocks} blocks leaves a {base_h}x{base_w} base "
            f"(< {MIN_BASE}); lower max_blocks"
        )
    return blocks, base_h, base_w


class Dropout(layers.Layer):
    """keras.layers.Dropout's mask (keep with probability 1 - rate, scale by 1 / (1 - rate)), cheaper.

    Keras draws one uniform float per element (a 32-bit Philox word) and applies it with a
    select, forward and backward. Here each 32-bit word gives two 16-bit draws (so `rate` is
    honoured to 1/65536) and the mask multiplies: its gradient is the same multiply. On a
    64x48x80x64 bfloat16 activation, forward + backward: ~65 ms against Keras' ~120 ms.
    The seed state is a keras.random.SeedGenerator, as Keras' layer has, so a checkpoint
    holds it (gan/step.py) and a resumed run draws the same masks.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate {rate} must be in [0, 1)")
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if not training or self.rate == 0:
            return x
        # SeedGenerator's state is int64; the stateless ops take an int32 pair (as Keras casts it).
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), 2**31 - 1), tf.int32)
        channels = x.shape[-1]
        words = tf.random.stateless_uniform(
            tf.concat([tf.shape(x)[:-1], [(channels + 1) // 2]], 0), seed, minval=None, maxval=None, dtype=tf.int32
        )
        draws = tf.reshape(tf.bitcast(words, tf.uint16), tf.concat([tf.shape(x)[:-1], [-1]], 0))[..., :channels]
        keep = draws >= tf.constant(round(self.rate * 65536), tf.uint16)
        mask = tf.cast(keep, x.dtype) * tf.cast(1.0 / (1.0 - self.rate), x.dtype)  # no gradient flows here
        return x * mask

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


class BatchNormalization(layers.BatchNormalization):
    """keras.layers.BatchNormalization computed by one FusedBatchNormV3 op (and one for its gradient).

    Keras 3 composes the layer from moments and elementwise ops, each a pass over the
    activations. Same weights, so checkpoints do not change; the moving statistics get the
    batch's biased variance, as Keras' do (the kernel returns the unbiased one). Like Keras,
    it computes in float32 whatever the dtype policy. A synchronized layer (several
    replicas), renorm, a mask, or no scale or centre keep Keras' own computation.
    """

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        fused = self.scale and self.center and not (self.synchronized or self.renorm) and mask is None
        if not fused or self.axis not in (-1, rank - 1):
            return super().call(inputs, training=training, mask=mask)
        x = tf.cast(inputs, tf.float32)
        x = x if rank == 4 else tf.reshape(x, [-1, 1, 1, x.shape[-1]])  # the op wants NHWC
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )
            count = tf.cast(tf.size(x) // x.shape[-1], tf.float32)
            variance *= (count - 1.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.epsilon, is_training=False
            )
        return tf.cast(tf.reshape(y, tf.shape(inputs)), self.compute_dtype)


class MinibatchStdDev(layers.Layer):
    """(B, H, W, C) -> (B, H, W, C + 1): the last channel is the batch's mean feature std."""

    def call(self, x):
        # float32 statistics: a bfloat16 variance of near-equal values is mostly rounding.
        std = keras.ops.sqrt(keras.ops.var(keras.ops.cast(x, "float32"), axis=0) + 1e-8)
        spread = keras.ops.cast(keras.ops.mean(std), x.dtype)
        return keras.ops.concatenate([x, keras.ops.ones_like(x[..., :1]) * spread], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)


def _init(seed: int | None, layer: int) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(0.0, 0.02, seed=None if seed is None else seed * 1000 + layer)


def build_generator(
    image_shape: tuple[int, int, int],
    latent_dim: int = 100,
    filters: int = 256,
    max_blocks: int = 4,
    *,
    seed: int | None = None,
    dtype: str | None = None,
) -> keras.Model:
    """Noise (B, latent_dim) -> images (B, H, W, C) in [-1, 1], float32."""
    height, width, channels = image_shape
    blocks, base_h, base_w = upsampling_plan(height, width, max_blocks)
    noise = keras.Input((latent_dim,), name="noise")
    x = layers.Dense(base_h * base_w * filters, use_bias=False, kernel_initializer=_init(seed, 0), dtype=dtype)(
        noise
    )
    x = BatchNormalization(dtype=dtype)(x)
    x = layers.LeakyReLU(0.2, dtype=dtype)(x)
    x = layers.Reshape((base_h, base_w, filters), dtype=dtype)(x)
    for block in range(1, blocks):
        # BN follows, so a bias would be cancelled by its mean subtraction.
        x = layers.Conv2DTranspose(
            max(filters >> block, 32), 4, strides=2, padding="same", use_bias=False,
            kernel_initializer=_init(seed, block), dtype=dtype,
        )(x)  # fmt: skip
        x = BatchNormalization(dtype=dtype)(x)
        x = layers.LeakyReLU(0.2, dtype=dtype)(x)
    # The last upsampling emits the image itself, as in the tutorial: no full-resolution block.
    x = layers.Conv2DTranspose(
        channels, 4, strides=2, padding="same", kernel_initializer=_init(seed, blocks), dtype=dtype
    )(x)
    images = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(noise, images, name="generator")


def build_discriminator(
    image_shape: tuple[int, int, int],
    filters: int = 64,
    max_blocks: int = 4,
    dropout: float = 0.3,
    *,
    seed: int | None = None,
    dtype: str | None = None,
    spectral_norm: bool = False,
    minibatch_std: bool = False,
) -> keras.Model:
    """Images (B, H, W, C) in [-1, 1] -> one real/fake logit (B, 1), float32."""
    blocks, _, _ = upsampling_plan(image_shape[0], image_shape[1], max_blocks)

    def normed(layer: layers.Layer) -> layers.Layer:
        return layers.SpectralNormalization(layer, dtype=layer.dtype_policy) if spectral_norm else layer

    images = keras.Input(image_shape, name="image")
    x = images
    for block in range(blocks):
        x = normed(layers.Conv2D(
            filters << block, 4, strides=2, padding="same", kernel_initializer=_init(seed, block), dtype=dtype
        ))(x)  # fmt: skip
        x = layers.LeakyReLU(0.2, dtype=dtype)(x)
        x = Dropout(dropout, seed=None if seed is None else seed * 1000 + 100 + block, dtype=dtype)(x)
    if minibatch_std:
        x = MinibatchStdDev(dtype=dtype)(x)
    x = layers.Flatten(dtype=dtype)(x)
    logit = normed(layers.Dense(1, kernel_initializer=_init(seed, blocks), dtype="float32", name="logit"))(x)
    model = keras.Model(images, logit, name="discriminator")
    for number, layer in enumerate(l for l in model.layers if isinstance(l, layers.SpectralNormalization)):
        # Keras draws the power iteration's start unseeded: seed it like the kernels.
        start = keras.initializers.TruncatedNormal(stddev=0.02, seed=None if seed is None else seed * 1000 + 200 + number)
        layer.vector_u.assign(start(layer.vector_u.shape))
    return model
