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
from keras import layers

from gan.layers import FusedBatchNorm, MinibatchStdDev, Uint16Dropout

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
    x = FusedBatchNorm(dtype=dtype)(x)
    x = layers.LeakyReLU(0.2, dtype=dtype)(x)
    x = layers.Reshape((base_h, base_w, filters), dtype=dtype)(x)
    for block in range(1, blocks):
        # BN follows, so a bias would be cancelled by its mean subtraction.
        x = layers.Conv2DTranspose(
            max(filters >> block, 32), 4, strides=2, padding="same", use_bias=False,
            kernel_initializer=_init(seed, block), dtype=dtype,
        )(x)  # fmt: skip
        x = FusedBatchNorm(dtype=dtype)(x)
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
        x = Uint16Dropout(dropout, seed=None if seed is None else seed * 1000 + 100 + block, dtype=dtype)(x)
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
