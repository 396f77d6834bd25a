"""The DCGAN's custom Keras layers; named for what they do, so none shadows a Keras layer.

Checkpoints hold no class names (only each layer's place in its model and its variables'
attribute names), so checkpoints written before these layers moved here restore unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


class Uint16Dropout(layers.Layer):
    """keras.layers.Dropout's mask (keep with probability 1 - rate, scale by 1 / (1 - rate)) from 16-bit draws.

    Keras draws one uniform float per element (a 32-bit Philox word) and applies it with a
    select, forward and backward. Here each 32-bit word gives two 16-bit draws (so `rate` is
    honoured to 1/65536) and the mask multiplies: its gradient is the same multiply. It pays
    in bfloat16 only; in float32 the step is as fast with Keras' layer (docs/training-speed.md).
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


class FusedBatchNorm(layers.BatchNormalization):
    """keras.layers.BatchNormalization computed by one FusedBatchNormV3 op (and one for its gradient).

    Keras 3 composes the layer from moments and elementwise ops, each a pass over the
    activations: this trains faster in float32 and bfloat16 (docs/training-speed.md). Same weights, so checkpoints do not change; the moving statistics get the
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
    """(B, H, W, C) -> (B, H, W, C + 1): the last channel is the batch's mean feature std.

    ProGAN's minibatch stddev (Karras et al. 2018, over the whole minibatch): real batches are
    varied, so D can tell apart a generator whose samples look alike."""

    def call(self, x):
        # float32 statistics: a bfloat16 variance of near-equal values is mostly rounding.
        std = keras.ops.sqrt(keras.ops.var(keras.ops.cast(x, "float32"), axis=0) + 1e-8)
        spread = keras.ops.cast(keras.ops.mean(std), x.dtype)
        return keras.ops.concatenate([x, keras.ops.ones_like(x[..., :1]) * spread], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)
