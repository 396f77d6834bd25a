"""Several devices: which ones a run trains on, and how one global step is shared among them.

`devices` "auto" trains on every GPU when more than one is visible, "all" on every GPU or,
with none, every logical CPU (how the tests get two replicas), "one" on a single device.
With several, gan/step.py builds every model variable under a `MirroredStrategy` and runs
the step once per replica; `batch_size` stays the global batch and must split evenly.

The global batch, its noise and DiffAugment draws are drawn outside `strategy.run` as on one
device and sliced per replica inside the step (not `experimental_distribute_dataset`), so a
seed trains the same images with the same noise on any number of replicas, and a resume
continues that one stream. docs/training.md, "Inside the model and the step".
"""

from __future__ import annotations

import functools

import tensorflow as tf

from synthwave.settings import RuntimeSettings


class ReplicaError(ValueError):
    """The settings cannot train on several replicas: a batch they cannot share, or XLA."""


def replica_devices(runtime: RuntimeSettings, batch_size: int) -> list[str]:
    """The devices a run's replicas run on: none for a single device, else two or more.

    Refuses a batch size the replicas cannot share equally, and XLA, which Keras 3 also turns
    off under tf.distribute (and which cannot reach a second CPU's variables)."""
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if runtime.devices == "one":
        return []
    if runtime.devices == "all":
        names = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
    else:
        names = gpus
    if len(names) < 2:
        return []
    if batch_size % len(names):
        raise ReplicaError(
            f"batch_size {batch_size} does not split over {len(names)} replicas ({', '.join(names)}): "
            f"set --batch-size to a multiple of {len(names)}, or --devices one"
        )
    if runtime.jit_compile == "on":
        raise ReplicaError(
            f"jit_compile on does not work across {len(names)} replicas: set --jit-compile auto (off with "
            f"replicas), or --devices one"
        )
    return names


@functools.cache
def mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    """One strategy per device set and process: a second one over the same devices starts its
    collective keys afresh, and its all-reduces then clash with the first's (tensorflow#62790)."""
    return tf.distribute.MirroredStrategy(list(devices))


def shares(strategy: tf.distribute.Strategy, tensors: object) -> object:
    """A nest of global-batch tensors as per-replica values: replica i gets the i-th equal rows."""
    flat = [tf.split(tensor, strategy.num_replicas_in_sync) for tensor in tf.nest.flatten(tensors)]
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.nest.pack_sequence_as(tensors, [parts[context.replica_id_in_sync_group] for parts in flat])
    )


class Recorder:
    """Stands in for DiffAugment's generator and keeps every draw, made for the global batch."""

    def __init__(self, rng: tf.random.Generator) -> None:
        self.rng, self.draws = rng, []

    def uniform(self, *args: object, **kwargs: object) -> tf.Tensor:
        self.draws.append(self.rng.uniform(*args, **kwargs))
        return self.draws[-1]


class Replay:
    """Stands in for DiffAugment's generator in one replica: hands out its rows of the recorded draws in order."""

    def __init__(self, draws: list[tf.Tensor]) -> None:
        self._draws = iter(draws)

    def uniform(self, *args: object, **kwargs: object) -> tf.Tensor:
        return next(self._draws)


def agree_on_finite(grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """Gradients that are non-finite on every replica when they are on any.

    Keras 3's LossScaleOptimizer decides from the first replica's gradients, not yet
    all-reduced, whether to apply or skip a step (its merge_call path; without merge_call,
    each replica decides alone). A non-finite gradient on another replica would then be
    summed into the update: NaN weights. A NaN added to the first gradient makes every
    replica skip."""
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(grad)) for grad in grads])
    failed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(~finite, tf.float32))
    poison = tf.where(failed > 0, float("nan"), 0.0)
    return [grads[0] + tf.cast(poison, grads[0].dtype), *grads[1:]]
