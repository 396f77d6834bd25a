"""gan.step.DCGAN on CPU with tiny models: updates, reproducibility, EMA, checkpoints, precision."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gan.step import DCGAN, gan_losses, native_bfloat16
from synthwave.settings import TrainSettings

SHAPE = (16, 16, 3)
TINY = dict(batch_size=4, latent_dim=8, g_filters=32, d_filters=8, max_blocks=2, seed=3)


def make(**overrides: object) -> DCGAN:
    return DCGAN(TrainSettings(**{**TINY, **overrides}), SHAPE)


def batch(seed: int = 0) -> tf.Tensor:
    return tf.random.stateless_uniform([4, *SHAPE], seed=(seed, 1), minval=-1.0, maxval=1.0)


def values(variables: list[tf.Variable]) -> list[np.ndarray]:
    return [v.numpy().copy() for v in variables]


def losses(gan: DCGAN, steps: int) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in gan.train_step(batch(i)).items()} for i in range(steps)]


def test_step_updates_both_networks() -> None:
    gan = make()
    g_before, d_before = values(gan.generator.trainable_variables), values(gan.discriminator.trainable_variables)
    metrics = gan.train_step(batch())
    assert set(metrics) == {"g_loss", "d_loss", "d_real", "d_fake"}
    assert all(v.shape == () and np.isfinite(v.numpy()) for v in metrics.values())
    assert 0 < float(metrics["d_real"]) < 1 and 0 < float(metrics["d_fake"]) < 1
    for before, variables in ((g_before, gan.generator), (d_before, gan.discriminator)):
        after = values(variables.trainable_variables)
        assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert int(gan.step.numpy()) == 1


@pytest.mark.parametrize("precision", ["off", "on"])
def test_same_seed_same_losses(precision: str) -> None:
    # Bit-exact on CPU: same initial weights, noise and dropout masks, deterministic kernels.
    first, again = losses(make(mixed_precision=precision), 3), losses(make(mixed_precision=precision), 3)
    assert first == again
    assert losses(make(mixed_precision=precision, seed=4), 1)[0] != first[0]


def test_ema_trails_the_generator() -> None:
    decay = 0.9
    gan = make(ema_decay=decay)
    assert gan.ema_generator is not None
    assert all(np.array_equal(e, r) for e, r in zip(gan.ema_generator.get_weights(), gan.generator.get_weights()))
    for i, done in enumerate([0, 1, 100]):
        gan.step.assign(done)
        ema_before = values(gan.ema_generator.weights)
        gan.train_step(batch(i))
        warm = min(decay, (1 + done) / (10 + done))  # the warm-up: 0.1 after no step, 0.9 from step 81 on
        for ema, raw, before in zip(gan.ema_generator.weights, gan.generator.weights, ema_before, strict=True):
            raw_now, ema_now = raw.numpy(), ema.numpy()
            if raw.trainable:
                np.testing.assert_allclose(ema_now, raw_now + warm * (before - raw_now), rtol=1e-5, atol=1e-7)
                assert not np.array_equal(ema_now, raw_now)
                # Closer to the generator than before the step.
                assert np.abs(ema_now - raw_now).sum() < np.abs(before - raw_now).sum()
            else:
                np.testing.assert_array_equal(ema_now, raw_now)  # BatchNorm statistics are copied
    noise = tf.random.normal([2, 8])
    assert not np.allclose(gan.sample(noise), gan.generator(noise, training=False))
    assert make(ema_decay=None).ema_generator is None



@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_early_samples_are_not_flat(ema_decay) -> None:
    """After 10 steps BatchNorm's moving variance is still 90% its initial 1, several times the
    activations' own: sampling with it as stored shrinks every layer's output towards flat grey.
    sample() debiases the statistics, so its spread is that of G in training mode (batch statistics)."""
    gan = make(ema_decay=ema_decay)
    losses(gan, 10)
    generator = gan.generator if ema_decay is None else gan.ema_generator
    stored = values(generator.non_trainable_weights)
    noise = tf.random.stateless_normal([16, 8], seed=(5, 6))
    sampled = gan.sample(noise).numpy().std()
    as_stored = generator(noise, training=False).numpy().std()
    assert all(np.array_equal(a, b) for a, b in zip(stored, values(generator.non_trainable_weights), strict=True))
    in_training = generator(noise, training=True).numpy().std()  # updates the statistics: last
    assert sampled > 3 * as_stored and 0.5 < sampled / in_training < 2, (sampled, as_stored, in_training)


RECIPE = dict(
    ema_decay=0.9, spectral_norm=True, augment="color,translation,cutout", loss="hinge", minibatch_std=True, r1_gamma=1.0
)


@pytest.mark.parametrize("recipe", [dict(ema_decay=0.9), RECIPE], ids=["article", "recipe"])
def test_checkpoint_restores_everything(tmp_path: Path, recipe: dict) -> None:
    trained = make(**recipe)
    losses(trained, 2)
    path = trained.checkpoint().save(str(tmp_path / "ckpt"))
    resumed = make(**recipe, seed=9)  # other initial weights, noise and augmentations: all from the file
    resumed.checkpoint().restore(path).assert_consumed()

    assert int(resumed.step.numpy()) == 2
    for a, b in (
        (trained.generator, resumed.generator),
        (trained.discriminator, resumed.discriminator),
        (trained.ema_generator, resumed.ema_generator),
    ):
        assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    for a, b in ((trained.g_optimizer, resumed.g_optimizer), (trained.d_optimizer, resumed.d_optimizer)):
        assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.variables, b.variables, strict=True))
    # The resumed run continues as the uninterrupted one: same noise, same next step.
    np.testing.assert_array_equal(trained.noise_rng.normal([3, 8]), resumed.noise_rng.normal([3, 8]))
    if trained.augment_rng is not None:
        np.testing.assert_array_equal(trained.augment_rng.state, resumed.augment_rng.state)
    assert losses(trained, 1) == losses(resumed, 1)


def test_hinge_loss_on_known_logits() -> None:
    real, fake = tf.constant([[2.0], [0.5], [-1.0]]), tf.constant([[-2.0], [0.0], [1.5]])
    d_loss, g_loss = gan_losses("hinge", real, fake)
    # D: mean(relu(1 - real)) + mean(relu(1 + fake)) = (0 + 0.5 + 2)/3 + (0 + 1 + 2.5)/3; G: -mean(fake)
    np.testing.assert_allclose(float(d_loss), 2.5 / 3 + 3.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(float(g_loss), 0.5 / 3, rtol=1e-6)
    d_bce, g_bce = gan_losses("bce", real, fake)
    np.testing.assert_allclose(float(g_bce), np.mean(np.log1p(np.exp(-fake.numpy()))), rtol=1e-6)
    assert float(d_bce) != float(d_loss)


@pytest.mark.parametrize("precision", ["off", "on"])
def test_recipe_is_deterministic_and_spectral_norm_bounds_d(precision: str) -> None:
    first, again = losses(make(**RECIPE, mixed_precision=precision), 3), losses(make(**RECIPE, mixed_precision=precision), 3)
    assert first == again and all(np.isfinite(list(step.values())).all() for step in first)
    gan = make(**RECIPE, mixed_precision=precision)
    gan.train_step(batch())
    for _ in range(10):  # training calls run the power iteration and divide each kernel by its estimate
        gan.discriminator(batch(), training=True)
    normed = [layer for layer in gan.discriminator.layers if hasattr(layer, "vector_u")]
    assert len(normed) == 3  # two convolutions and the logit
    for layer in normed:
        kernel = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        np.testing.assert_allclose(np.linalg.norm(kernel, 2), 1.0, rtol=0.1)  # unnormalised: ~0.2
    assert make(spectral_norm=True).settings.model.spectral_norm is True


def test_augmentation_changes_only_what_d_sees() -> None:
    plain, augmented = make(), make(augment="translation,cutout")
    g_before = values(augmented.generator.trainable_variables)
    metrics = [gan.train_step(batch()) for gan in (plain, augmented)]
    assert float(metrics[0]["d_loss"]) != float(metrics[1]["d_loss"])
    assert plain.augment_rng is None and augmented.augment_rng is not None
    assert all(not np.array_equal(b, a) for b, a in zip(g_before, values(augmented.generator.trainable_variables)))


@pytest.mark.parametrize("precision", ["off", "on"])
def test_r1_penalty_adds_half_gamma_times_squared_gradient_norm_to_d_loss(precision: str) -> None:
    plain, penalised = (make(dropout=0.0, mixed_precision=precision, r1_gamma=gamma) for gamma in (0.0, 10.0))
    real = batch()
    with tf.GradientTape() as tape:  # D at the real images, before the step: what the penalty measures
        tape.watch(real)
        logits = penalised.discriminator(real, training=True)
    norms = tf.reduce_sum(tf.square(tf.cast(tape.gradient(logits, real), tf.float32)), axis=[1, 2, 3])
    expected = 0.5 * 10.0 * float(tf.reduce_mean(norms))
    assert expected > 0
    without, with_r1 = plain.train_step(real), penalised.train_step(real)
    np.testing.assert_allclose(float(with_r1["d_loss"]) - float(without["d_loss"]), expected, rtol=1e-3, atol=1e-6)
    assert float(with_r1["g_loss"]) == float(without["g_loss"])  # G's loss does not see it
    # The penalty shapes D's update: its weights move differently.
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(values(plain.discriminator.trainable_variables), values(penalised.discriminator.trainable_variables))
    )


def test_label_smoothing_changes_only_d_loss() -> None:
    plain, smooth = make().train_step(batch()), make(label_smoothing=0.2).train_step(batch())
    assert float(plain["d_loss"]) != float(smooth["d_loss"])
    assert float(plain["g_loss"]) == float(smooth["g_loss"])  # same weights and noise before the update


def test_lr_decay_falls_linearly_to_zero_at_the_last_step_and_resumes_where_it_was(tmp_path: Path) -> None:
    gan = make(steps=4, lr_decay=0.5, g_lr=1e-3, d_lr=1e-4)
    rates = []
    for i in range(4):
        gan.train_step(batch(i))
        rates.append((float(gan.g_optimizer.learning_rate), float(gan.d_optimizer.learning_rate)))
    np.testing.assert_allclose(rates, [(1e-3, 1e-4), (1e-3, 1e-4), (1e-3, 1e-4), (5e-4, 5e-5)], rtol=1e-6)
    # A checkpoint has the same variables with or without decay: runs switch either way.
    path = gan.checkpoint().save(str(tmp_path / "ckpt"))
    make(steps=4, lr_decay=0.0, seed=9).checkpoint().restore(path).assert_consumed()
    resumed = make(steps=4, lr_decay=0.5, seed=9)
    resumed.checkpoint().restore(path).assert_consumed()
    # Past the last step the rate is 0: another update changes no weight, in either copy.
    for model in (gan, resumed):
        g_before, d_before = values(model.generator.trainable_variables), values(model.discriminator.trainable_variables)
        model.train_step(batch(9))
        assert float(model.g_optimizer.learning_rate) == 0.0
        assert all(np.array_equal(b, a) for b, a in zip(g_before, values(model.generator.trainable_variables)))
        assert all(np.array_equal(b, a) for b, a in zip(d_before, values(model.discriminator.trainable_variables)))


def test_bfloat16_on_cpu() -> None:
    # "auto" spelled out: SYNTHWAVE_MIXED_PRECISION may set the default for the whole run.
    assert make(mixed_precision="auto").dtype_policy == ("mixed_bfloat16" if native_bfloat16() else None)
    assert make(mixed_precision="off").dtype_policy is None
    gan = make(mixed_precision="on")
    assert gan.dtype_policy == "mixed_bfloat16" and not gan.jit_compile
    metrics = gan.train_step(batch())
    assert all(np.isfinite(v.numpy()) for v in metrics.values())
    assert gan.sample(tf.random.normal([2, 8])).dtype == tf.float32


def test_float16_loss_scaling_unscales_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path, on CPU: Adam's first moment must see unscaled gradients (2**15 times smaller)."""
    reference = make(mixed_precision="off")
    reference.train_step(batch())
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["pretend GPU"])
    gan = make(jit_compile="off", mixed_precision="auto")
    assert gan.dtype_policy == "mixed_float16"
    metrics = gan.train_step(batch())
    assert all(np.isfinite(v.numpy()) for v in metrics.values())
    scale = float(gan.d_optimizer.dynamic_scale.numpy())
    assert scale == 2.0**15  # no overflow: the step was applied, not skipped

    def first_moment(gan: DCGAN) -> float:
        inner = getattr(gan.d_optimizer, "inner_optimizer", gan.d_optimizer)
        return float(sum(np.abs(m.numpy()).sum() for m in inner._momentums))

    assert 0.5 < first_moment(gan) / first_moment(reference) < 2.0


@pytest.mark.parametrize(("setting", "onednn"), [(None, True), ("0", False)])
def test_importing_gan_chooses_onednn_kernels(setting: str | None, onednn: bool) -> None:
    """A process that imports gan before TensorFlow runs oneDNN's kernels, unless its environment
    says TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's own default is off on CPUs without AVX512-VNNI/BF16)."""
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    probe = "import gan, tensorflow; from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(onednn)
