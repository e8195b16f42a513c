"""Cdiscount training throughput: the cost of gradient accumulation and of the input pipeline.

    python benchmarks/train_step.py [--batch-size N] [--accumulation-steps 4] [--skip-full]
        [--skip-training] [--skip-pipeline] [--workdir /tmp/yt8m_bench_train_step]

Prints, measured in this one run, a table with two ratios against their goals:

1. Training images/s of the tiny Xception (`variant="tiny"`, 64 px, micro-batch 32) and of the
   full Xception (`variant="xception"`, 180 px, `weights=None`, micro-batch 8), each compiled with
   the Cdiscount task's loss and metrics and trained by `model.fit` with plain Adam and with
   `GradientAccumulationOptimizer(Adam, k)`. Input is a repeated
   `tf.data.Dataset.from_tensors(batch)` of synthetic pixels held in memory, so it is never the
   bottleneck. A callback reads the clock at the end of every batch (it forces the step's logs
   to the host, so a step has finished when its time is taken); the first `--warmup-steps`
   batches of a fit (tracing, first-step allocations) are excluded and the next `--steps`
   batches (rounded up to a multiple of k) are timed in windows of k batches, so every window
   holds exactly one real update with accumulation. Without and with accumulation alternate
   for `--repeats` rounds (`--full-repeats` for the full model) and each keeps its fastest
   window: other processes share the CPU, and they only ever make a window slower.
   Accumulation cost per image = 1 - (images/s with) / (images/s without); goal <= 5 %.

2. Images/s of the training input pipeline against decode-only, both on the train split of
   generated sample data (`write_sample`, `--products` products, converted once by the Beam job
   into `--workdir` and reused), at 180 px, batches of `--pipeline-batch-size`:
   - pipeline: `image_dataset(data_dir, "train", seed=0)` exactly as training uses it (shard
     shuffle, interleaved read, per-record parse, flatten to images, shuffle buffer, repeat,
     decode, batch, prefetch). The random crop and flip are no longer part of it: they run at
     the model's front (`CdiscountAugmentation`, on the accelerator), outside this measure.
   - decode-only: the same shards through the same interleaved reader (`records`, shards in
     order), repeated; per record only the `images` feature is parsed (the least parsing that
     reaches the JPEG bytes); flattened to single images; `augment.decode` (JPEG decode and the
     resize to 180 px that every decoded image gets) in a parallel map (AUTOTUNE); batched and
     prefetched. No labels, no shuffle, no enumerate, no augmentation.
   Both are measured with `tfds.benchmark(ds, num_iter=..., batch_size=...)`; its "first
   batch excluded" examples/s (start-up and the first shuffle-buffer fill excluded) counts the
   first batch's images although it excludes its time, so it is scaled by
   (num_iter - 1) / num_iter. This process's CPU time over the same batches is printed too,
   as CPU ms per image: other processes on a shared machine slow the wall clock much more than
   they change it. Alternating rounds; the best of each kept. Ratio pipeline / decode-only
   (tfds images/s; and by CPU time, decode-only ms / pipeline ms); goal >= 0.9.

Timings on a shared CPU are noisy; only the ratios within one run mean anything.

Backends: with KERAS_BACKEND=jax (e.g. on a GPU: `KERAS_BACKEND=jax python
benchmarks/train_step.py --skip-pipeline`) the training part runs the plain-Adam rows (Keras
feeds the tf.data batches to JAX; TensorFlow is hidden from the GPUs so it does not reserve their
memory) and prints the accumulation column as n/a: `GradientAccumulationOptimizer` supports the
TensorFlow backend only. This path has not been run here (no JAX installed).
"""

import argparse
import contextlib
import io
import math
import os
import resource
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfrecords import cdiscount_product as kind
from yt8m_keras.accumulation import GradientAccumulationOptimizer
from yt8m_keras.data.images import decode
from yt8m_keras.competitions.cdiscount.input import AUTOTUNE, image_dataset, records, shard_files
from yt8m_keras.models.xception import build_xception
from yt8m_keras.competitions.cdiscount import task

ACCUMULATION_COST_GOAL = 0.05
PIPELINE_RATIO_GOAL = 0.9
CDISCOUNT_CLASSES = 5270


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- training -------------------------------------------------------------------------------


class BatchEndTimes(keras.callbacks.Callback):
    """Clock readings at the end of every training batch of the last fit."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        # Defining this hook makes Keras call it synchronously, after converting the step's
        # logs to Python numbers, i.e. after the step has run.
        self.times.append(time.perf_counter())


def synthetic_batches(batch_size: int, image_size: int, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, size=(batch_size,)).astype("int64")
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


def accumulation_supported() -> bool:
    return keras.backend.backend() == "tensorflow"


def compiled_model(variant: str, image_size: int, num_classes: int, accumulation_steps: int):
    keras.utils.set_random_seed(0)
    model = build_xception(num_classes, image_size=image_size, variant=variant, weights=None)
    optimizer = keras.optimizers.Adam(1e-3)
    if accumulation_steps:
        optimizer = GradientAccumulationOptimizer(optimizer, accumulation_steps)
    model.compile(optimizer=optimizer, **task.compile_args())
    return model


def cycle_seconds(model, dataset, warmup: int, steps: int, cycle: int):
    """Durations of consecutive `cycle`-batch windows after `warmup` batches of one fit."""
    timer = BatchEndTimes()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
    ends = timer.times[warmup - 1::cycle]
    return [b - a for a, b in zip(ends, ends[1:])]


def measure_training(variant: str, image_size: int, batch_size: int, accumulation_steps: int,
                     warmup: int, steps: int, repeats: int, num_classes: int):
    """Best images/s without and with accumulation (None where unsupported), and the steps.

    Timed in windows of `accumulation_steps` batches (one update each with accumulation); the
    fastest window of all rounds counts, the others being slowed by whatever shares the CPU.
    """
    k = accumulation_steps
    steps = k * math.ceil(steps / k)
    dataset = synthetic_batches(batch_size, image_size, num_classes)
    configs = {"without": 0}
    if accumulation_supported():
        configs["with"] = k
    models = {name: compiled_model(variant, image_size, num_classes, n) for name, n in configs.items()}
    windows = {name: [] for name in configs}
    for round_ in range(repeats):
        # The first fit of a model traces and compiles; later fits only start an iterator.
        round_warmup = warmup if round_ == 0 else 1
        for name, model in models.items():
            seconds = cycle_seconds(model, dataset, round_warmup, steps, k)
            windows[name] += seconds
            log(f"  {variant} {image_size}px batch {batch_size}, {name} accumulation, round "
                f"{round_ + 1}: {k * batch_size / np.median(seconds):.1f} images/s (median window), "
                f"{k * batch_size / min(seconds):.1f} (best)")
    best = {name: k * batch_size / min(seconds) for name, seconds in windows.items()}
    return best["without"], best.get("with"), steps


# -- input pipeline -------------------------------------------------------------------------


def sample_data(workdir: str, products: int, num_shards: int) -> str:
    """A converted sample dataset, generated and converted on the first run only."""
    from beam_jobs import bson_to_tfrecords
    from yt8m_keras.competitions.cdiscount.sample import write_sample

    data_dir = os.path.join(workdir, f"cdiscount-{products}p-{num_shards}shards")
    if os.path.exists(os.path.join(data_dir, "manifest.json")):
        return data_dir
    bson_dir = os.path.join(workdir, f"bson-{products}p")
    log(f"generating {products} sample products in {bson_dir} ...")
    paths = write_sample(bson_dir, products=products, seed=0)
    log(f"converting to {data_dir} with the Beam job ...")
    bson_to_tfrecords.run(["--input", paths["train"], "--input", paths["test"], "--output", data_dir,
                           "--categories", paths["categories"], "--num-shards", str(num_shards),
                           "--overwrite", "--runner=FnApiRunner"])
    return data_dir


def decode_only_dataset(data_dir: str, batch_size: int, image_size: int) -> tf.data.Dataset:
    """The same train shards read and JPEG-decoded with nothing else (see the module docstring)."""
    paths, compression = shard_files(data_dir, "train")
    images_only = {kind.IMAGES: kind.FEATURES[kind.IMAGES]}
    ds = records(paths, compression).repeat()
    ds = ds.map(lambda record: tf.io.parse_single_example(record, images_only)[kind.IMAGES],
                num_parallel_calls=AUTOTUNE).unbatch()
    ds = ds.map(lambda jpeg: decode(jpeg, image_size), num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuAfterFirst:
    """Iterates `dataset`, reading this process's CPU time at batch 1 and at batch `last`.

    The same window as tfds.benchmark's "first batch excluded" figure, taken before the
    pipeline's background threads can prefetch past it.
    """

    def __init__(self, dataset, last: int):
        self.dataset, self.last = dataset, last

    def __iter__(self):
        for i, batch in enumerate(self.dataset):
            if i == 0:
                self.start = cpu_seconds()
            if i == self.last:
                self.seconds = cpu_seconds() - self.start
            yield batch


def benchmark_pipeline(dataset: tf.data.Dataset, num_iter: int, batch_size: int):
    """(images/s from tfds.benchmark, CPU milliseconds per image), first batch excluded."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    timed = CpuAfterFirst(dataset, num_iter - 1)
    with contextlib.redirect_stdout(io.StringIO()):  # tfds prints its own summary
        result = tfds.benchmark(timed, num_iter=num_iter, batch_size=batch_size)
    # "lasts" divides all num_iter batches' images by the time after the first batch.
    images = (num_iter - 1) * batch_size
    return float(result.stats.loc["lasts", "avg"]) * (num_iter - 1) / num_iter, 1e3 * timed.seconds / images


def measure_pipeline(data_dir: str, batch_size: int, image_size: int, num_iter: int, repeats: int):
    """{name: (best images/s, least CPU ms/image)} for "pipeline" and "decode-only"."""
    builders = {
        "decode-only": lambda: decode_only_dataset(data_dir, batch_size, image_size),
        "pipeline": lambda: image_dataset(data_dir, "train", batch_size=batch_size,
                                          image_size=image_size, seed=0),
    }
    rates = {name: [] for name in builders}
    cpu = {name: [] for name in builders}
    for round_ in range(repeats):
        for name, build in builders.items():
            rate, ms = benchmark_pipeline(build(), num_iter, batch_size)
            log(f"  {name}, round {round_ + 1}: {rate:.0f} images/s, {ms:.3f} CPU ms/image")
            rates[name].append(rate)
            cpu[name].append(ms)
    return {name: (max(rates[name]), min(cpu[name])) for name in builders}


# -- report ---------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int,
                        help="training micro-batch for both models (default: 32 tiny, 8 full)")
    parser.add_argument("--accumulation-steps", type=int, default=4, help="k (default 4)")
    parser.add_argument("--tiny-image-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=180, help="full model and pipeline")
    parser.add_argument("--num-classes", type=int, default=CDISCOUNT_CLASSES,
                        help=f"classifier width (default {CDISCOUNT_CLASSES}, Cdiscount's)")
    parser.add_argument("--steps", type=int, default=40, help="timed batches, tiny (default 40)")
    parser.add_argument("--full-steps", type=int, default=8, help="timed batches, full (default 8)")
    parser.add_argument("--warmup-steps", type=int, default=4,
                        help="untimed batches before the first timed one (default 4)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="alternating rounds per measurement; the best is kept (default 5)")
    parser.add_argument("--full-repeats", type=int, default=2,
                        help="alternating rounds for the full Xception (default 2)")
    parser.add_argument("--skip-full", action="store_true", help="skip the (slow on CPU) full Xception")
    parser.add_argument("--skip-training", action="store_true", help="skip both models")
    parser.add_argument("--skip-pipeline", action="store_true", help="skip the input pipeline part")
    parser.add_argument("--products", type=int, default=2000, help="sample products (default 2000)")
    parser.add_argument("--num-shards", type=int, default=8, help="conversion shards (default 8)")
    parser.add_argument("--pipeline-batch-size", type=int, default=64)
    parser.add_argument("--pipeline-batches", type=int, default=60,
                        help="batches per tfds.benchmark (num_iter, default 60)")
    parser.add_argument("--workdir", default="/tmp/yt8m_bench_train_step")
    args = parser.parse_args(argv)
    if args.accumulation_steps < 2:
        parser.error("--accumulation-steps must be at least 2")
    if min(args.warmup_steps, args.steps, args.full_steps, args.repeats, args.full_repeats) < 1:
        parser.error("--warmup-steps, --steps, --full-steps, --repeats and --full-repeats must be "
                     "at least 1")
    if args.pipeline_batches < 2:
        parser.error("--pipeline-batches must be at least 2")
    if keras.backend.backend() != "tensorflow":
        # TensorFlow only feeds tf.data here; leave the accelerators' memory to the backend.
        tf.config.set_visible_devices([], "GPU")

    k = args.accumulation_steps
    lines = []
    if not args.skip_training:
        models = [("tiny", args.tiny_image_size, args.batch_size or 32, args.steps, args.repeats)]
        if not args.skip_full:
            models.append(("xception", args.image_size, args.batch_size or 8, args.full_steps,
                           args.full_repeats))
        lines += [f"training: compiled model.fit on in-memory synthetic batches, {args.num_classes} "
                  f"classes, backend {keras.backend.backend()}, fastest {k}-batch window of "
                  "alternating rounds",
                  f"{'model':<10} {'image':>5} {'batch':>5} {'steps x rounds':>14}  {'plain Adam':>13}  "
                  f"{f'accumulation k={k}':>18}  {'cost/image':>10}"]
        for variant, size, batch, steps, repeats in models:
            log(f"training {variant} ...")
            without, with_, steps = measure_training(variant, size, batch, k, args.warmup_steps,
                                                     steps, repeats, args.num_classes)
            if with_ is None:
                accumulated, cost_text = "n/a (TF only)", "n/a"
            else:
                cost = 1 - with_ / without
                accumulated, cost_text = f"{with_:.1f} img/s", f"{100 * cost:.1f} %"
            lines.append(f"{variant:<10} {size:>3}px {batch:>5} {f'{steps} x {repeats}':>14}  "
                         f"{without:>7.1f} img/s  {accumulated:>18}  {cost_text:>10}")
        lines.append(f"goal: accumulation cost/image <= {100 * ACCUMULATION_COST_GOAL:.0f} %")

    if not args.skip_pipeline:
        data_dir = sample_data(args.workdir, args.products, args.num_shards)
        log("input pipeline ...")
        results = measure_pipeline(data_dir, args.pipeline_batch_size, args.image_size,
                                   args.pipeline_batches, args.repeats)
        pipeline, pipeline_cpu = results["pipeline"]
        decode_only, decode_only_cpu = results["decode-only"]
        if lines:
            lines.append("")
        lines += [f"input pipeline: tfds.benchmark, train split of {args.products} sample products, "
                  f"{args.image_size} px, batch {args.pipeline_batch_size}, {args.pipeline_batches} "
                  f"batches (first excluded), best of {args.repeats} alternating rounds",
                  f"{'':28} {'tfds.benchmark':>14}  {'CPU time':>14}",
                  f"{'decode-only':28} {decode_only:8.0f} img/s  {decode_only_cpu:7.3f} ms/img",
                  f"{'image_dataset (training)':28} {pipeline:8.0f} img/s  {pipeline_cpu:7.3f} ms/img",
                  f"ratio pipeline/decode-only: {pipeline / decode_only:.2f}  (goal >= "
                  f"{PIPELINE_RATIO_GOAL}); by CPU time per image: {decode_only_cpu / pipeline_cpu:.2f}"]

    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
