"""One DCGAN training step, its state, and what a checkpoint holds.

The step is one `tf.function` with one generator pass and one persistent tape for both
losses. D is called on the real and on the fake batch separately: that is the least work.
One call on concat([real, fake]) measured 12-15% fewer images per CPU-second
(benchmarks/train.py --ablate): G's gradient then runs back through D on the whole
concatenated batch, the real half with zero gradients, 8 batch-passes of D instead of 7.

Reproducibility: noise comes from a `tf.random.Generator` seeded from the settings and
every layer (weights, Dropout) is seeded, all of it saved in the checkpoint, so a run and
its resume draw the same streams. On CPU, steps are bit-exact for a seed on one machine
and thread setting (tests/test_step.py). `tf.config.experimental.enable_op_determinism()`
is not called: it is process-global (it also fixes tf.data's order for every pipeline)
and CPU kernels need nothing from it. On GPU, cuDNN's backprop-filter algorithms and
atomic reductions make runs differ in the last bits; a caller that needs bit-exact GPU
runs can enable it before building, at a cost in speed.

Precision: float16 with dynamic loss scaling on a GPU; bfloat16 (float32's range, no
scaling) on a CPU, where float16 is emulated. "auto" turns it on with a GPU and also on
CPUs that compute bfloat16 natively (AVX512-BF16, AMX): 1.7x the images per CPU-second
of float32 at 96x160, whose convolutions already run near the cores' float32 peak.
Keras 3's LossScaleOptimizer only offers `scale_loss()`; its `apply()` divides the
gradients of the scaled loss by that scale and skips the update (halving the scale) when
a gradient is not finite, so the step passes it the scaled loss's gradients unchanged.
XLA ("auto": GPU only) gave 0.2-0.75x the images per CPU-second of the plain graph on CPU.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from gan.models import build_discriminator, build_generator
from synthwave.settings import TrainSettings


def _resolve(choice: str, default: bool) -> bool:
    return choice == "on" or (choice == "auto" and default)


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (Linux flags), so oneDNN need not emulate it."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _bce(targets: float, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), targets), logits))


class DCGAN:
    """Generator, discriminator, their optimisers, an optional EMA generator and the step counter."""

    def __init__(self, settings: TrainSettings, image_shape: tuple[int, int, int]) -> None:
        self.settings = settings
        self.image_shape = tuple(image_shape)
        gpu = bool(tf.config.list_physical_devices("GPU"))
        mixed = _resolve(settings.mixed_precision, gpu or native_bfloat16())
        self.dtype_policy = ("mixed_float16" if gpu else "mixed_bfloat16") if mixed else None
        self.jit_compile = _resolve(settings.jit_compile, gpu)

        def generator() -> keras.Model:
            return build_generator(
                self.image_shape, settings.latent_dim, settings.g_filters, settings.max_blocks,
                seed=settings.seed, dtype=self.dtype_policy,
            )  # fmt: skip

        self.generator = generator()
        self.discriminator = build_discriminator(
            self.image_shape, settings.d_filters, settings.max_blocks, settings.dropout,
            seed=settings.seed + 1, dtype=self.dtype_policy,
        )  # fmt: skip
        # Same seeds: the EMA starts equal to the generator.
        self.ema_generator = generator() if settings.ema_decay is not None else None

        self.g_optimizer = self._optimizer(settings.g_lr, self.generator)
        self.d_optimizer = self._optimizer(settings.d_lr, self.discriminator)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.noise_rng = tf.random.Generator.from_seed(settings.seed)
        self.train_step = tf.function(self._train_step, reduce_retracing=True, jit_compile=self.jit_compile)

    def _optimizer(self, lr: float, model: keras.Model) -> keras.optimizers.Optimizer:
        s = self.settings
        optimizer = keras.optimizers.Adam(lr, beta_1=s.beta_1, beta_2=s.beta_2)
        if self.dtype_policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Built now, so a checkpoint restores its slots immediately instead of deferring them.
        optimizer.build(model.trainable_variables)
        return optimizer

    def _train_step(self, real: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of D and G on a batch of real images in [-1, 1]."""
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        noise = self.noise_rng.normal([tf.shape(real)[0], self.settings.latent_dim])
        with tf.GradientTape(persistent=True) as tape:
            fake = self.generator(noise, training=True)
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss = _bce(1.0 - self.settings.label_smoothing, real_logits) + _bce(0.0, fake_logits)
            g_loss = _bce(1.0, fake_logits)  # non-saturating: G maximises log D(G(z))
            d_scaled = self.d_optimizer.scale_loss(d_loss)
            g_scaled = self.g_optimizer.scale_loss(g_loss)
        d_grads = tape.gradient(d_scaled, d_vars)
        g_grads = tape.gradient(g_scaled, g_vars)
        del tape
        self.d_optimizer.apply(d_grads, d_vars)
        self.g_optimizer.apply(g_grads, g_vars)
        if self.ema_generator is not None:
            decay = self.settings.ema_decay
            for ema, raw in zip(self.ema_generator.weights, self.generator.weights, strict=True):
                # Weights move toward the generator; BatchNorm statistics are copied, as in NVlabs' code.
                ema.assign(raw + decay * (ema - raw) if raw.trainable else raw)
        self.step.assign_add(1)
        return {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
            "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),
        }

    def sample(self, noise: tf.Tensor) -> tf.Tensor:
        """Images in [-1, 1] from the EMA generator when there is one, BatchNorm in inference mode."""
        generator = self.generator if self.ema_generator is None else self.ema_generator
        return generator(noise, training=False)

    def checkpoint(self) -> tf.train.Checkpoint:
        """Everything a resumed run needs to continue exactly as if never stopped."""
        parts = {"ema_generator": self.ema_generator} if self.ema_generator is not None else {}
        # Dropout's seed states are `variables` but not `weights`, so the models alone lack them.
        weights = {id(w) for w in self.discriminator.weights}
        dropout_seeds = [v for v in self.discriminator.variables if id(v) not in weights]
        return tf.train.Checkpoint(
            dropout_seeds=dropout_seeds,
            generator=self.generator,
            discriminator=self.discriminator,
            g_optimizer=self.g_optimizer,
            d_optimizer=self.d_optimizer,
            step=self.step,
            noise_rng=self.noise_rng,
            **parts,
        )
