"""One DCGAN training step, its state, and what a checkpoint holds.

`train_step` is one `tf.function`: one generator pass, D called on the real and on the fake
batch separately (cheaper than one call on both), one persistent tape for both losses.
`train_steps` runs it `steps_per_call` times per call into TensorFlow and returns one row
per step: METRICS, then the seconds it waited for its batch and computed.

Noise and DiffAugment draws come from `tf.random.Generator`s seeded from the settings, every
layer is seeded, and all of it is in the checkpoint, so a resume draws the same streams.
How precision, XLA, determinism and several devices work here: docs/training.md, "Inside
the model and the step"; what each choice measured: docs/training-speed.md.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from gan.augment import diff_augment
from gan.distribute import Recorder, Replay, agree_on_finite, mirrored, replica_devices, shares
from gan.models import build_discriminator, build_generator
from synthwave.settings import TrainSettings

Draws = tf.random.Generator | Replay | None  # DiffAugment's randomness: one device's, a replica's, or none
METRICS = ("g_loss", "d_loss", "d_real", "d_fake")  # what a step returns, and the order of train_steps' columns


GPU_STEPS_PER_CALL = 16  # "auto" with a GPU: spreads each call's fixed host cost thin (docs/training-loop.md)


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


def _mean(per_example: tf.Tensor, global_batch: int | tf.Tensor | None) -> tf.Tensor:
    """This replica's share of the global batch's mean (the mean itself on one device)."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)


def _bce(targets: float, logits: tf.Tensor, global_batch: int | tf.Tensor | None = None) -> tf.Tensor:
    return _mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), targets), logits), global_batch)


def gan_losses(
    loss: str, real_logits: tf.Tensor, fake_logits: tf.Tensor, label_smoothing: float = 0.0,
    global_batch: int | tf.Tensor | None = None,
):  # fmt: skip
    """(d_loss, g_loss) of one batch's logits for `loss` "bce" or "hinge", averaged over `global_batch`
    (default: this batch times the replicas)."""
    if loss == "hinge":
        d_loss = _mean(tf.nn.relu(1.0 - real_logits), global_batch) + _mean(tf.nn.relu(1.0 + fake_logits), global_batch)
        return d_loss, _mean(-fake_logits, global_batch)
    d_loss = _bce(1.0 - label_smoothing, real_logits, global_batch) + _bce(0.0, fake_logits, global_batch)
    return d_loss, _bce(1.0, fake_logits, global_batch)  # non-saturating: G maximises log D(G(z))


@contextlib.contextmanager
def debiased_batch_norm(model: keras.Model, updates: int):
    """The model's BatchNorm moving statistics bias-corrected for `updates` updates, as Adam's moments.

    They start at mean 0, variance 1 and move 1% a step: after 60 steps the variance is still 55%
    the initial 1, so early samples came out scaled towards flat grey. Dividing out the initial
    values' remaining weight (momentum ** updates) gives the average of the batches seen."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    stored = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]
    for layer, (mean, variance) in zip(layers, stored):
        initial = layer.momentum**updates if updates else 0.0  # no update yet: the initial values are all there is
        layer.moving_mean.assign((mean / (1.0 - initial)).astype(mean.dtype))
        layer.moving_variance.assign(np.maximum((variance - initial) / (1.0 - initial), 0.0).astype(variance.dtype))
    try:
        yield
    finally:
        for layer, (mean, variance) in zip(layers, stored):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)


class DCGAN:
    """Generator, discriminator, their optimisers, an optional EMA generator and the step counter."""

    def __init__(self, settings: TrainSettings, image_shape: tuple[int, int, int]) -> None:
        self.settings = settings
        self.image_shape = tuple(image_shape)
        runtime = settings.runtime
        gpu = bool(tf.config.list_physical_devices("GPU"))
        mixed = _resolve(runtime.mixed_precision, gpu or native_bfloat16())
        self.dtype_policy = ("mixed_float16" if gpu else "mixed_bfloat16") if mixed else None
        devices = replica_devices(runtime, settings.schedule.batch_size)
        self.strategy = mirrored(tuple(devices)) if devices else None
        self.jit_compile = _resolve(runtime.jit_compile, gpu) and self.strategy is None
        auto_steps = GPU_STEPS_PER_CALL if gpu else 1
        self.steps_per_call = auto_steps if runtime.steps_per_call == "auto" else runtime.steps_per_call
        with self.strategy.scope() if self.strategy else contextlib.nullcontext():
            self._build()
        # Outside the scope: the RNGs draw for the global batch, outside strategy.run.
        self.noise_rng = tf.random.Generator.from_seed(settings.seed)
        self.augment_rng = tf.random.Generator.from_seed(settings.seed + 2) if settings.model.augment else None
        self.train_step = tf.function(self._train_step, reduce_retracing=True, jit_compile=self.jit_compile)
        self.train_steps = tf.function(self._train_steps)  # not XLA: it reads the dataset iterator

    def _build(self) -> None:
        model, seed = self.settings.model, self.settings.seed

        def generator() -> keras.Model:
            return build_generator(
                self.image_shape, model.latent_dim, model.g_filters, model.max_blocks, seed=seed, dtype=self.dtype_policy,
            )  # fmt: skip

        self.generator = generator()
        self.discriminator = build_discriminator(
            self.image_shape, model.d_filters, model.max_blocks, self.settings.optimisation.dropout, seed=seed + 1,
            dtype=self.dtype_policy, spectral_norm=model.spectral_norm, minibatch_std=model.minibatch_std,
        )  # fmt: skip
        # Same seeds: the EMA starts equal to the generator.
        self.ema_generator = generator() if model.ema_decay is not None else None
        if self.strategy is not None:
            for layer in self.generator.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    # Read at each call: the global batch's statistics, as on one device.
                    layer.synchronized = True

        self.g_optimizer = self._optimizer(self.settings.optimisation.g_lr, self.generator)
        self.d_optimizer = self._optimizer(self.settings.optimisation.d_lr, self.discriminator)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")

    def _optimizer(self, lr: float, model: keras.Model) -> keras.optimizers.Optimizer:
        adam = self.settings.optimisation
        optimizer = keras.optimizers.Adam(lr, beta_1=adam.beta_1, beta_2=adam.beta_2)
        if self.dtype_policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # Built now, so a checkpoint restores its slots immediately instead of deferring them.
        optimizer.build(model.trainable_variables)
        return optimizer

    def _train_steps(self, batches: tf.data.Iterator, count: tf.Tensor) -> tf.Tensor:
        """`count` steps on batches from `batches`: one row per step of its metrics (METRICS order),
        then the seconds it waited for its batch and the seconds it computed."""
        rows = tf.TensorArray(tf.float32, size=count)
        done = tf.timestamp()
        for i in tf.range(count):
            with tf.control_dependencies([done]):  # the wait starts when the previous step has finished
                real = next(batches)
            with tf.control_dependencies([real]):
                arrived = tf.timestamp()
            metrics = self.train_step(real)
            with tf.control_dependencies(list(metrics.values())):
                finished = tf.timestamp()
            times = tf.cast([arrived - done, finished - arrived], tf.float32)
            rows = rows.write(i, tf.concat([tf.stack([metrics[name] for name in METRICS]), times], 0))
            done = finished
        return rows.stack()

    def _train_step(self, real: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of D and G on a global batch of real images: uint8, or float in [-1, 1]."""
        batch = tf.shape(real)[0]
        noise = self.noise_rng.normal([batch, self.settings.model.latent_dim])
        if self.settings.optimisation.lr_decay:
            self._decay_learning_rates()
        if self.strategy is None:
            metrics = self._replica_step(real, noise, batch, self.augment_rng, self.augment_rng)
        else:
            draws = ([], [])
            if self.augment_rng is not None:
                # The real images' draws, then the fakes', as on one device; only the draws run,
                # as the function prunes the augmentation of zeros that nothing uses.
                draws = tuple(self._record_augment(tf.zeros(tf.shape(real))) for _ in range(2))
            real, noise, draws = shares(self.strategy, (real, noise, draws))
            per_replica = self.strategy.run(self._replicated, args=(real, noise, draws, batch))
            total = tf.distribute.ReduceOp.SUM  # of each replica's share of the global mean
            metrics = {name: self.strategy.reduce(total, value, axis=None) for name, value in per_replica.items()}
        self.step.assign_add(1)
        return metrics

    def _decay_learning_rates(self) -> None:
        """Both rates fall linearly to 0 over the last `lr_decay` of the steps, so the final
        weights settle instead of stopping mid-oscillation. Assigned to the optimisers' own
        rate variables, from the checkpointed step: a checkpoint holds the same variables with
        or without decay, and a resume continues the schedule."""
        s = self.settings
        decay_steps = max(1, round(s.schedule.steps * s.optimisation.lr_decay))
        left = tf.clip_by_value((s.schedule.steps - tf.cast(self.step, tf.float32)) / decay_steps, 0.0, 1.0)
        self.g_optimizer.learning_rate = s.optimisation.g_lr * left
        self.d_optimizer.learning_rate = s.optimisation.d_lr * left

    def _record_augment(self, images: tf.Tensor) -> list[tf.Tensor]:
        recorder = Recorder(self.augment_rng)
        diff_augment(images, self.settings.model.augment, recorder)
        return recorder.draws

    def _replicated(self, real: tf.Tensor, noise: tf.Tensor, draws: tuple, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        replay = (Replay(draws[0]), Replay(draws[1])) if self.augment_rng is not None else (None, None)
        return self._replica_step(real, noise, batch, *replay)

    def _replica_step(
        self, real: tf.Tensor, noise: tf.Tensor, global_batch: tf.Tensor, real_rng: Draws, fake_rng: Draws
    ) -> dict[str, tf.Tensor]:
        """One replica's share of the update: its rows of the batch, noise and augmentation draws."""
        if real.dtype == tf.uint8:
            real = tf.cast(real, tf.float32) / 127.5 - 1.0
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        s = self.settings
        with tf.GradientTape(persistent=True) as tape:
            fake = self.generator(noise, training=True)
            if real_rng is not None:
                real = diff_augment(real, s.model.augment, real_rng)
                fake = diff_augment(fake, s.model.augment, fake_rng)
            real_logits, r1 = self._real_logits(real, global_batch)
            fake_logits = self.discriminator(fake, training=True)
            d_loss, g_loss = gan_losses(s.optimisation.loss, real_logits, fake_logits, s.optimisation.label_smoothing, global_batch)
            d_loss += r1
            # Float16 only: `apply` below unscales these gradients and skips a step whose are not finite.
            d_scaled = self.d_optimizer.scale_loss(d_loss)
            g_scaled = self.g_optimizer.scale_loss(g_loss)
        d_grads = tape.gradient(d_scaled, d_vars)
        g_grads = tape.gradient(g_scaled, g_vars)
        del tape
        if self.strategy is not None and self.dtype_policy == "mixed_float16":
            d_grads, g_grads = agree_on_finite(d_grads), agree_on_finite(g_grads)
        self.d_optimizer.apply(d_grads, d_vars)
        self.g_optimizer.apply(g_grads, g_vars)
        if self.ema_generator is not None:
            # Warm-up (NVlabs' ema_rampup idea): the first steps' EMA follows G closely, so early
            # samples show what G has learnt instead of its initial, near-constant output.
            done = tf.cast(self.step, tf.float32)
            decay = tf.minimum(self.settings.model.ema_decay, (1.0 + done) / (10.0 + done))
            for ema, raw in zip(self.ema_generator.weights, self.generator.weights, strict=True):
                # Weights move toward the generator; BatchNorm statistics are copied, as in NVlabs' code.
                ema.assign(raw + decay * (ema - raw) if raw.trainable else raw)
        return {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "d_real": _mean(tf.sigmoid(real_logits), global_batch),
            "d_fake": _mean(tf.sigmoid(fake_logits), global_batch),
        }

    def _real_logits(self, real: tf.Tensor, global_batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """D's logits on the real batch and the R1 penalty (Mescheder et al. 2018): r1_gamma / 2
        times the mean squared norm of D's gradient at the real images, 0 when off."""
        gamma = self.settings.optimisation.r1_gamma
        if not gamma:
            return self.discriminator(real, training=True), tf.constant(0.0)
        with tf.GradientTape() as tape:
            tape.watch(real)
            logits = self.discriminator(real, training=True)
            # Scaled as the losses are, so float16 gradients do not underflow; unscaled below.
            scaled = self.d_optimizer.scale_loss(tf.reduce_sum(logits))
        grads = tf.cast(tape.gradient(scaled, real), tf.float32) / self.d_optimizer.scale_loss(tf.constant(1.0))
        return logits, 0.5 * gamma * _mean(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]), global_batch)

    def sample(self, noise: tf.Tensor) -> tf.Tensor:
        """Images in [-1, 1] from the EMA generator when there is one, BatchNorm in inference mode
        with its moving statistics debiased (`debiased_batch_norm`)."""
        generator = self.generator if self.ema_generator is None else self.ema_generator
        with debiased_batch_norm(generator, int(self.step.numpy())):
            return generator(noise, training=False)

    def checkpoint(self) -> tf.train.Checkpoint:
        """Everything a resumed run needs to continue exactly as if never stopped."""
        parts = {"ema_generator": self.ema_generator} if self.ema_generator is not None else {}
        if self.augment_rng is not None:
            parts["augment_rng"] = self.augment_rng
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
