"""Small builders for `tf.train.Feature`, shared by every record kind's `encode`."""

from typing import Iterable

import tensorflow as tf


def int64_feature(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def bytes_feature(values: Iterable[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def float_feature(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def parse_examples(serialized: tf.Tensor, spec: dict) -> dict:
    """Parses one serialized `tf.train.Example` (a scalar) or a batch of them (a vector).

    The same call serves tf.data (`map` before or after `batch`) and serving
    signatures (a batch of records), so the spec is only ever written once.
    """
    serialized = tf.convert_to_tensor(serialized, tf.string)
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, spec)
    return tf.io.parse_example(serialized, spec)
