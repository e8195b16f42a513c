"""Melanoma: the training input stream against decode-only, and the on-model augmentation's cost.

    python benchmarks/melanoma_input.py [--images 300] [--image-size 512] [--batches 30] [--rounds 5] [--workdir DIR]

Writes `yt8m-keras sample melanoma` data and converts it at --image-size with the Beam job
(cached in --workdir), then measures in one run, after a warm-up pass:

- decode-only: shard records -> parse -> `tf.io.decode_jpeg` (uint8) -> batch;
- the training stream: `input.train_dataset` (the training folds' shards interleaved, the label
  filter, shuffle, batch, then per batch: parse, decode, the metadata vector), which is what
  the trainer feeds the model;

as images/s and host CPU seconds per image (process time: every core the pipeline used),
the two measured alternately, each round on fresh iterators, and prints the medians over the
rounds and the ratio (goal >= 0.9 of decode-only: augmentation is not on the host). Then
the winners' augmentation (`MelanomaAugmentation`, batched at the model's front) on this
CPU, per image, for information: on an accelerator it runs beside the backbone.
"""

import argparse
import os
import time

import numpy as np
import tensorflow as tf

from tfrecords import melanoma_image as kind
from tfrecords.manifest import MANIFEST, read_manifest, shard_paths


def prepare(workdir: str, images: int, image_size: int) -> str:
    from yt8m_keras.competitions.melanoma.sample import write_sample
    from yt8m_keras.convert import convert

    data = os.path.join(workdir, f"data_{images}_{image_size}")
    if os.path.exists(os.path.join(data, MANIFEST)):
        return data
    paths = write_sample(os.path.join(workdir, f"raw_{images}"), images=images, seed=0)
    convert("melanoma", ["--csv", paths["train_csv"], "--images", paths["train_images"], "--isic2019",
                         paths["isic2019"], "--output", data, "--image-size", str(image_size), "--folds", "5",
                         "--shards-per-fold", "1", "--overwrite"])
    return data


def measure(ds: tf.data.Dataset, batches: int, batch_size: int):
    """(images/s, CPU seconds per image) over `batches` batches, after one warm-up batch."""
    iterator = iter(ds)
    next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return batches * batch_size / wall, cpu / (batches * batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating measurements of each stream (medians printed): on a shared machine "
                             "one 30-batch run of the same code gave ratios from 0.83 to 0.91")
    parser.add_argument("--workdir", default="/tmp/melanoma_bench")
    args = parser.parse_args()

    from yt8m_keras.competitions.melanoma import input as data
    from yt8m_keras.models.augmentation import MelanomaAugmentation

    directory = prepare(args.workdir, args.images, args.image_size)
    paths = shard_paths(directory, read_manifest(directory), "train")
    size, batch = args.image_size, args.batch_size

    def decode_only():
        ds = tf.data.TFRecordDataset(paths).repeat()
        ds = ds.map(lambda r: tf.io.decode_jpeg(kind.parse(r)[kind.IMAGE], channels=3),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    stream = data.train_dataset(directory, fold=0, batch_size=batch, image_size=size, seed=0, shuffle_buffer=256)
    for ds in (decode_only(), stream):  # warm the page cache and the tf.data threads
        measure(ds, 3, batch)
    rounds = [(measure(decode_only(), args.batches, batch), measure(stream, args.batches, batch))
              for _ in range(args.rounds)]
    decode_runs, stream_runs = zip(*rounds)
    rate_decode, cpu_decode = np.median(decode_runs, axis=0)
    rate_stream, cpu_stream = np.median(stream_runs, axis=0)
    print(f"{'stream (median of ' + str(args.rounds) + ')':<28}{'images/s':>10}{'CPU ms/img':>12}")
    print(f"{'decode-only':<28}{rate_decode:>10.1f}{cpu_decode * 1e3:>12.3f}")
    print(f"{'training stream':<28}{rate_stream:>10.1f}{cpu_stream * 1e3:>12.3f}")
    print(f"ratio stream/decode-only: {rate_stream / rate_decode:.2f} by rate, "
          f"{cpu_decode / cpu_stream:.2f} by CPU time per image (goal >= 0.9)")

    augmentation = MelanomaAugmentation(seed=0)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    run = tf.function(lambda x: augmentation(x, training=True))
    run(images)  # trace
    started = time.perf_counter()
    rounds = 3
    for _ in range(rounds):
        run(images).numpy()
    per_image = (time.perf_counter() - started) / (rounds * batch)
    print(f"on-model augmentation on this CPU (tf.function, batch {batch}, {size} px): {per_image * 1e3:.1f} ms/image")


if __name__ == "__main__":
    main()
