"""Training throughput on CPU: the article's step, the TensorFlow tutorial's, and the project's.

    python -m benchmarks.train                      # the three steps, medians and ratios
    python -m benchmarks.train --ablate             # + one row per optimisation tried
    python -m benchmarks.train --shards 'data/shards/*.tfrecord'   # + gan.data alone
    python -m benchmarks.train --loop               # + the loop's host overhead per step
    python -m benchmarks.train --reader VIDEO       # + the reader at 180x320: PNG, JPEG, cached

All steps train the same models (gan.models, 96x160, batch 64, latent 100, one seed) on
one fixed batch, so only the step differs:
  article   eager (no tf.function), two tapes, D called on real and on fake, float32,
            Keras' Dropout and BatchNormalization layers as the article wrote it;
  tutorial  the same under @tf.function, as in tensorflow.org/tutorials/generative/dcgan;
  project   gan.step.DCGAN.train_step with default TrainSettings (bfloat16 on CPUs
            that compute it natively), gan.layers.Uint16Dropout (Keras' Bernoulli
            masks from 16-bit draws) and gan.layers.FusedBatchNorm (Keras' layer on
            TensorFlow's fused kernel).
Kernels are process-wide and chosen before TensorFlow loads. This process has the
project's (importing gan turns on oneDNN's, gan/__init__.py); a second process, with
TF_ENABLE_ONEDNN_OPTS empty, has TensorFlow's own choice for this CPU (oneDNN only on
AVX512-VNNI/BF16 or AMX CPUs): the kernels the article's and the tutorial's code get when
run as written. Both tables are printed; the targets are read on the steps as each ships
(the project in this process against the other two in the second), and the ratios within
each process show what the kernels give each step.
The machine is shared and has few cores, so each step is traced first, the steps are
timed in interleaved rounds (A B C A B C ...) and the median round is reported, as
images per wall second (what the targets are set on) and per CPU second of this process
(steadier when other jobs take cores away; a step that parallelises better gains less here). Thread settings are process-wide and fixed at start-up,
so those rows run in subprocesses, one after the other. The project's step is given uint8
batches, as the loop gives it (it scales them itself); the other two float32 ones.

--loop times gan.loop.run_training around a tiny model (16x16 images, batch 4) on an in-memory
dataset, at 1 step per call and at the GPU default, against the same steps in one call
with nothing around them (best of the rounds): the difference is the loop's host work per
step (target <= 0.2 ms). --reader times gan.data.image_dataset alone on shards of VIDEO's frames at 180x320,
as PNG and as JPEG, streaming and from the cache (target >= 10,000 images/s cached).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gan  # noqa: E402,F401  (first: it chooses TensorFlow's kernels)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.util import _pywrap_util_port  # noqa: E402

from gan.layers import FusedBatchNorm, Uint16Dropout  # noqa: E402
from gan.models import build_discriminator, build_generator  # noqa: E402
from gan.step import DCGAN, GPU_STEPS_PER_CALL, _bce, native_bfloat16  # noqa: E402
from synthwave.settings import TrainSettings  # noqa: E402

BATCH = 64
TARGET_EAGER, TARGET_TUTORIAL, TARGET_DATA = 2.5, 1.2, 10.0
TARGET_OVERHEAD_MS, TARGET_CACHED = 0.2, 10_000
Shape = tuple[int, int, int]
Step = Callable[[tf.Tensor], dict[str, tf.Tensor]]
Times = tuple[float, float]  # wall, CPU


def settings(**overrides: object) -> TrainSettings:
    """The defaults without the generator EMA: the other two steps have none, so all do the same work."""
    return TrainSettings(**{"batch_size": BATCH, "latent_dim": 100, "ema_decay": None, **overrides})


def as_written(model: keras.Model) -> keras.Model:
    """The model with Keras' own layers where gan.layers has its own (Uint16Dropout, FusedBatchNorm),
    as the article and the tutorial write them."""

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, Uint16Dropout):
            return keras.layers.Dropout(layer.rate, dtype=layer.dtype_policy)
        if isinstance(layer, FusedBatchNorm):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def two_tape_step(shape: Shape) -> Step:
    """The tutorial's train_step on the project's models: two tapes, D called twice, float32."""
    s = settings()
    m, o = s.model, s.optimisation
    generator = as_written(build_generator(shape, m.latent_dim, m.g_filters, m.max_blocks, seed=s.seed))
    discriminator = as_written(build_discriminator(shape, m.d_filters, m.max_blocks, o.dropout, seed=s.seed + 1))
    g_opt = keras.optimizers.Adam(o.g_lr, beta_1=o.beta_1, beta_2=o.beta_2)
    d_opt = keras.optimizers.Adam(o.d_lr, beta_1=o.beta_1, beta_2=o.beta_2)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)

    def step(real: tf.Tensor) -> dict[str, tf.Tensor]:
        noise = tf.random.normal([BATCH, m.latent_dim])
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = generator(noise, training=True)
            real_out = discriminator(real, training=True)
            fake_out = discriminator(fake, training=True)
            g_loss = bce(tf.ones_like(fake_out), fake_out)
            d_loss = bce(tf.ones_like(real_out), real_out) + bce(tf.zeros_like(fake_out), fake_out)
        g_vars, d_vars = generator.trainable_variables, discriminator.trainable_variables
        g_opt.apply(g_tape.gradient(g_loss, g_vars), g_vars)
        d_opt.apply(d_tape.gradient(d_loss, d_vars), d_vars)
        return {"g_loss": g_loss, "d_loss": d_loss}

    return step


class ConcatDCGAN(DCGAN):
    """The project's step with one D call on concat([real, fake]), as first designed."""

    def _train_step(self, real: tf.Tensor) -> dict[str, tf.Tensor]:
        g_vars, d_vars = self.generator.trainable_variables, self.discriminator.trainable_variables
        batch = tf.shape(real)[0]
        with tf.GradientTape(persistent=True) as tape:
            fake = self.generator(self.noise_rng.normal([batch, self.settings.model.latent_dim]), training=True)
            logits = self.discriminator(tf.concat([real, fake], 0), training=True)
            real_logits, fake_logits = logits[:batch], logits[batch:]
            d_loss = _bce(1.0 - self.settings.optimisation.label_smoothing, real_logits) + _bce(0.0, fake_logits)
            g_loss = _bce(1.0, fake_logits)
        self.d_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
        self.g_optimizer.apply(tape.gradient(g_loss, g_vars), g_vars)
        self.step.assign_add(1)
        return {"g_loss": g_loss, "d_loss": d_loss}


class KerasDropoutDCGAN(DCGAN):
    """The project's step with keras.layers.Dropout in D, as the other two steps have."""

    def __init__(self, settings: TrainSettings, image_shape: Shape) -> None:
        super().__init__(settings, image_shape)
        self.discriminator = as_written(self.discriminator)
        self.d_optimizer = self._optimizer(settings.optimisation.d_lr, self.discriminator)


class KerasBatchNormDCGAN(DCGAN):
    """The project's step with keras.layers.BatchNormalization in G, as the other two steps have."""

    def __init__(self, settings: TrainSettings, image_shape: Shape) -> None:
        super().__init__(settings, image_shape)
        self.generator = as_written(self.generator)
        self.g_optimizer = self._optimizer(settings.optimisation.g_lr, self.generator)


@dataclass
class Variant:
    name: str
    step: Step
    steps: int  # timed steps per round
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    uint8: bool = False  # given the batch as the loop gives it

    def input(self, real: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.round((real + 1.0) * 127.5), tf.uint8) if self.uint8 else real

    def run(self, real: tf.Tensor) -> None:
        real = self.input(real)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(self.steps):
            out = self.step(real)
        float(out["g_loss"])  # wait for the last step
        images = self.steps * BATCH
        self.wall.append(images / (time.perf_counter() - wall))
        self.cpu.append(images / (time.process_time() - cpu))

    @property
    def per_s(self) -> float:
        return statistics.median(self.wall)

    @property
    def per_cpu_s(self) -> float:
        return statistics.median(self.cpu)


def measure(variants: list[Variant], shape: Shape, rounds: int) -> None:
    real = tf.random.stateless_uniform([BATCH, *shape], seed=(0, 0), minval=-1.0, maxval=1.0)
    for variant in variants:
        variant.step(variant.input(real))  # trace and build outside the timing
    for _ in range(rounds):
        for variant in variants:
            variant.run(real)


def thread_rows(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """The project's step in a fresh process per (inter, intra) thread-pool setting."""
    rows = []
    for inter, intra in ((0, 0), (1, 2), (2, 1), (1, 1)):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.train", "--project-only", "--threads", f"{inter},{intra}",
             "--size", args.size, "--rounds", str(args.rounds), "--steps", str(args.steps)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        result = json.loads(out.stdout.strip().splitlines()[-1])
        label = "TF default" if inter == 0 else f"inter={inter} intra={intra}"
        rows.append((f"project, threads {label} (own process)", result["per_s"], result["per_cpu_s"]))
    return rows


def data_rate(pattern: str, batches: int) -> float:
    """Images/s of gan.data.image_dataset alone, built as the training loop builds it."""
    try:
        from gan.data import image_dataset
    except ImportError as error:
        raise SystemExit(f"--shards needs gan/data.py with image_dataset(...): {error}") from error
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise SystemExit(f"--shards {pattern!r} matches no files")
    s = settings()
    iterator = iter(image_dataset(paths, BATCH, shuffle_buffer=s.schedule.shuffle_buffer, seed=s.seed, repeat=True))
    for _ in range(3):  # fill the shuffle buffer and let AUTOTUNE settle
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * BATCH / (time.perf_counter() - start)


LOOP_SHAPE = (16, 16, 3)
LOOP = dict(batch_size=4, latent_dim=8, g_filters=32, d_filters=8, max_blocks=2, ema_decay=None, eval_every=0,
            mixed_precision="off", walk_seconds=0)  # fmt: skip


def loop_overhead(steps_per_call: list[int], rounds: int, steps: int) -> tuple[Times, dict[int, Times]]:
    """(wall, CPU) milliseconds per step of the tiny model's steps run back to back in one call (the
    bare step), and of gan.loop.run_training at each steps_per_call: the best of interleaved rounds, the
    one other jobs on the machine disturbed least (a median of a few rounds follows them). The loop
    is timed between its first and last `on_status`, after the first call's tracing and before the
    last step's grid and checkpoint; the dataset is in memory, so only the loop's own work differs.
    CPU time (all of this process's threads) is steadier than wall time when other jobs share the cores."""
    import tempfile

    from gan import loop

    images = tf.random.stateless_uniform([64, *LOOP_SHAPE], seed=(1, 2), maxval=256, dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices(tf.cast(images, tf.uint8)).repeat().batch(LOOP["batch_size"])
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    loop.image_dataset = lambda *args, **kwargs: dataset
    bare_model = DCGAN(TrainSettings(**LOOP), LOOP_SHAPE)
    batches = iter(dataset)
    bare_model.train_steps(batches, tf.constant(steps))  # traced outside the timing
    def clocks() -> Times:
        return time.perf_counter(), time.process_time()

    def per_step(began: Times, ended: Times, steps: int) -> Times:
        return tuple(1000 * (end - start) / steps for start, end in zip(began, ended, strict=True))

    bare, looped = [], {k: [] for k in steps_per_call}
    for _ in range(rounds):
        began = clocks()
        bare_model.train_steps(batches, tf.constant(steps)).numpy()
        bare.append(per_step(began, clocks(), steps))
        for k in steps_per_call:
            seen: list[tuple[int, Times]] = []
            with tempfile.TemporaryDirectory() as run_dir:
                settings = TrainSettings(**LOOP, run_dir=run_dir, steps=steps, sample_every=steps,
                                         checkpoint_every=steps, steps_per_call=k)  # fmt: skip
                loop.run_training(settings, [], LOOP_SHAPE, 64, on_status=lambda s: seen.append((s.step, clocks())))
            (first, began), (last, ended) = seen[0], seen[-1]
            looped[k].append(per_step(began, ended, last - first))

    def best(times: list[Times]) -> Times:
        return tuple(min(column) for column in zip(*times, strict=True))

    return best(bare), {k: best(times) for k, times in looped.items()}


def reader_rates(video: str, seconds: float = 3.0) -> dict[str, tuple[float, float]]:
    """(images/s, KB a frame in the shards) of gan.data.image_dataset alone (batch 64, seeded, as the loop
    builds it) on up to 512 frames of `video` at 180x320: PNG and JPEG shards streaming, and from the
    cache after its first epoch."""
    import tempfile
    from pathlib import Path

    from gan.data import image_dataset
    from synthwave.settings import FrameSettings
    from tasks.shards import write_video_shards

    s = settings()
    rates = {}
    with tempfile.TemporaryDirectory() as out:
        for image_format in ("png", "jpeg"):
            frames = FrameSettings(every=1, max_frames=512, size=(180, 320), image_format=image_format)
            manifest = write_video_shards(Path(video), "bench", frames, 20, Path(out) / image_format)
            paths = [str(Path(out) / image_format / shard["file"]) for shard in manifest["shards"]]
            frame_kb = sum(Path(path).stat().st_size for path in paths) / manifest["frames"] / 1000
            for cache in (False, True) if image_format == "png" else (False,):
                dataset = image_dataset(paths, BATCH, shuffle_buffer=s.schedule.shuffle_buffer, seed=s.seed, cache=cache)
                iterator = iter(dataset)
                for _ in range(manifest["frames"] // BATCH + 2):  # the first epoch (the cache fills), AUTOTUNE settles
                    next(iterator)
                images, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds:
                    images += len(next(iterator))
                rate = images / (time.perf_counter() - start)
                rates[f"{image_format}, {'cached' if cache else 'streaming'}"] = rate, frame_kb
    return rates


def stock_rows(args: argparse.Namespace) -> tuple[str, list[tuple[str, float, float]]]:
    """The three steps, interleaved, in a process with TensorFlow's own kernels for this CPU:
    TF_ENABLE_ONEDNN_OPTS empty leaves TensorFlow its default and gan/__init__.py its setdefault."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", "--three-only", "--size", args.size, "--rounds", str(args.rounds),
         "--steps", str(args.steps)],
        check=True, capture_output=True, text=True, env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": ""},
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["kernels"], [tuple(row) for row in result["rows"]]


def kernels() -> str:
    return "oneDNN" if _pywrap_util_port.IsMklEnabled() else "TensorFlow's own (no oneDNN)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="96x160", help="image HxW (default 96x160)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the median is reported")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant and round")
    parser.add_argument("--ablate", action="store_true", help="also time each optimisation on its own")
    parser.add_argument("--shards", metavar="GLOB", help="also time gan.data.image_dataset on these shards")
    parser.add_argument("--threads", metavar="INTER,INTRA", help="TF thread pools (0: TF's default)")
    parser.add_argument("--loop", action="store_true", help="only the loop's host overhead per step")
    parser.add_argument("--reader", metavar="VIDEO", help="only gan.data.image_dataset at 180x320 on VIDEO's frames")
    parser.add_argument("--project-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--three-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = (int(n) for n in args.size.lower().split("x"))
    shape = (height, width, 3)
    if args.threads:
        inter, intra = (int(n) for n in args.threads.split(","))
        tf.config.threading.set_inter_op_parallelism_threads(inter)
        tf.config.threading.set_intra_op_parallelism_threads(intra)

    if args.loop:
        k_gpu = GPU_STEPS_PER_CALL
        bare, looped = loop_overhead([1, k_gpu], args.rounds, steps=300)
        print(f"gan.loop.run_training's host work per step, tiny model ({'x'.join(map(str, LOOP_SHAPE[:2]))}, batch "
              f"{LOOP['batch_size']}), best of {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}: "
              f"bare step {bare[0]:.3f} ms wall, {bare[1]:.3f} ms CPU")  # fmt: skip
        for k, (wall, cpu) in looped.items():
            overhead, cpu_overhead = wall - bare[0], cpu - bare[1]
            print(f"  steps_per_call {k:>2}: loop {wall:.3f} ms wall, {cpu:.3f} ms CPU per step; overhead "
                  f"{overhead:.3f} ms wall, {cpu_overhead:.3f} ms CPU (target <= {TARGET_OVERHEAD_MS}: "
                  f"{'ok' if overhead <= TARGET_OVERHEAD_MS else 'MISSED'})")  # fmt: skip
        return
    if args.reader:
        print(f"gan.data.image_dataset alone at 180x320, batch {BATCH}, {os.cpu_count()} CPUs:")
        for name, (rate, frame_kb) in reader_rates(args.reader).items():
            target = f" (target >= {TARGET_CACHED}: {'ok' if rate >= TARGET_CACHED else 'MISSED'})" if "cached" in name else ""
            print(f"  {name:<16} {rate:>9.0f} images/s, shards {frame_kb:.0f} KB a frame{target}")
        return

    model = DCGAN(settings(), shape)
    project = Variant(f"project: DCGAN.train_step ({model.dtype_policy or 'float32'})", model.train_step, args.steps,
                      uint8=True)  # fmt: skip
    if args.project_only:
        measure([project], shape, args.rounds)
        print(json.dumps({"per_s": project.per_s, "per_cpu_s": project.per_cpu_s}))
        return

    article = Variant("article: eager, 2 tapes, 2 D calls", two_tape_step(shape), args.steps)
    tutorial = Variant("tutorial: tf.function, 2 tapes, 2 D calls", tf.function(two_tape_step(shape)), args.steps)
    main_rows = [article, tutorial, project]
    if args.three_only:
        measure(main_rows, shape, args.rounds)
        rows = [(row.name, row.per_s, row.per_cpu_s) for row in main_rows]
        print(json.dumps({"kernels": kernels(), "rows": rows}))
        return
    # (variant, what it is compared with): each optimisation on or off against its neighbour.
    extra: list[tuple[Variant, Variant]] = []
    if args.ablate:

        def variant(name: str, gan: DCGAN, steps: int = args.steps) -> Variant:
            return Variant(name, gan.train_step, steps)

        f32 = variant("project, float32 (mixed_precision=off)", DCGAN(settings(mixed_precision="off"), shape))
        xla = DCGAN(settings(mixed_precision="off", jit_compile="on"), shape)
        extra = [
            (f32, project),
            (variant("project, D on concat([real, fake])", ConcatDCGAN(settings(), shape)), project),
            (variant("project, keras.layers.Dropout in D", KerasDropoutDCGAN(settings(), shape)), project),
            (variant("project, keras.layers.BatchNormalization in G", KerasBatchNormDCGAN(settings(), shape)), project),
            (variant("project, float32 + XLA (jit_compile=on)", xla, steps=1), f32),  # 1: it is that slow
        ]
    measure(main_rows + [variant for variant, _ in extra], shape, args.rounds)
    threads = thread_rows(args) if args.ablate else []
    stock_kernels, stock = stock_rows(args)

    print(f"CPU training throughput at {height}x{width}, batch {BATCH}: median of {args.rounds} interleaved rounds "
          f"of {args.steps} steps; {os.cpu_count()} CPUs, native bfloat16: {native_bfloat16()}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"\n{'the project’s kernels: ' + kernels():<44} {'images/s':>9} {'img/CPU-s':>10}  vs")
    for variant in main_rows:
        print(f"{variant.name:<44} {variant.per_s:>9.1f} {variant.per_cpu_s:>10.1f}")
    for variant, base in extra:
        print(f"{variant.name:<44} {variant.per_s:>9.1f} {variant.per_cpu_s:>10.1f}  "
              f"{variant.per_cpu_s / base.per_cpu_s:.2f}x CPU-s of {base.name.split(' (')[0]}")  # fmt: skip
    for name, per_s, per_cpu_s in threads:
        print(f"{name:<44} {per_s:>9.1f} {per_cpu_s:>10.1f}  not interleaved")
    print(f"\n{'TensorFlow’s kernels: ' + stock_kernels + ' (own process)':<44}")
    for name, per_s, per_cpu_s in stock:
        print(f"{name:<44} {per_s:>9.1f} {per_cpu_s:>10.1f}")

    (_, article_s, article_cpu), (_, tutorial_s, tutorial_cpu), (_, project_s, _) = stock
    print("\nAs each ships (the project with its kernels, the others with TensorFlow's; two processes):")
    for name, base_s, base_cpu, target in (("article", article_s, article_cpu, TARGET_EAGER),
                                           ("tutorial", tutorial_s, tutorial_cpu, TARGET_TUTORIAL)):  # fmt: skip
        wall, cpu = project.per_s / base_s, project.per_cpu_s / base_cpu
        print(f"  project / {name}: {wall:.2f}x images/s (target >= {target}x: {'ok' if wall >= target else 'MISSED'}), "
              f"{cpu:.2f}x images/CPU-s")  # fmt: skip
    print("With the same kernels for all three (one process, interleaved), project / article and / tutorial:")
    print(f"  {kernels()}: {project.per_s / article.per_s:.2f}x, {project.per_s / tutorial.per_s:.2f}x images/s")
    print(f"  {stock_kernels}: {project_s / article_s:.2f}x, {project_s / tutorial_s:.2f}x images/s")
    print(f"The project's step on its kernels / on TensorFlow's: {project.per_s / project_s:.2f}x images/s")
    if args.shards:
        rate = data_rate(args.shards, batches=20)
        print(f"gan.data.image_dataset alone: {rate:.0f} images/s = {rate / project.per_s:.1f}x the project's step "
              f"(target >= {TARGET_DATA}x: {'ok' if rate >= TARGET_DATA * project.per_s else 'MISSED'})")  # fmt: skip


if __name__ == "__main__":
    main()
