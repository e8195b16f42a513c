"""Reading a split's shards: what every input pipeline starts with."""

from typing import List

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Asks tf.data to keep element order whatever the parallelism (seeded runs repeat)."""
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def records(paths: List[str], compression: str, shuffle: bool = False, seed: int = 0,
            cycle_length: int = 8) -> tf.data.Dataset:
    """Serialized records of several shards, read interleaved (in shard order unless `shuffle`)."""
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=max(1, min(cycle_length, len(paths))),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
