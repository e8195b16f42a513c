"""Reading a split's shards: what every input pipeline starts with."""

import re
from typing import List, Optional

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


def unreadable_shard(paths: List[str], compression: str, offset: int = 0) -> Optional[str]:
    """A UserError message naming the first of `paths` that does not read to its end, or None.

    Readers report a corrupt record without its file (tf.data: "corrupted record at N";
    Beam: the record's bytes), so the shards are read again one by one (only on an error
    path), those long enough to hold byte `offset` first.
    """
    sizes = {p: tf.io.gfile.stat(p).length if tf.io.gfile.exists(p) else 0 for p in paths}
    for path in sorted(paths, key=lambda p: sizes[p] <= offset):
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=compression):
                pass
        except tf.errors.DataLossError as e:
            return f"corrupted shard {path}: {e.message.split('[Op:')[0].split('}}')[-1].strip()} " \
                   "(convert the data again, or restore the file)"
    return None


def corrupt_shard(data_dir: str, error: tf.errors.DataLossError) -> str:
    """A UserError message naming the shard of `data_dir` that raised `error` mid-stream (`unreadable_shard`)."""
    from tfrecords.manifest import compression_type, join, read_manifest

    manifest = read_manifest(data_dir)
    paths = [join(data_dir, name) for split in manifest["splits"].values() for name in split["shards"]]
    match = re.search(r"corrupted record at (\d+)", error.message)
    return (unreadable_shard(paths, compression_type(manifest), int(match.group(1)) if match else 0)
            or f"corrupted record in a shard of {data_dir}: {error.message}")
