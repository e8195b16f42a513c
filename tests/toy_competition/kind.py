"""The `toy_point` record kind: id, 4 floats, a label (-1 when unknown)."""

import tensorflow as tf

KIND = "toy_point"
SCHEMA_VERSION = 1
DIM = 4
SPEC = {
    "id": tf.io.FixedLenFeature([], tf.int64),
    "x": tf.io.FixedLenFeature([DIM], tf.float32),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def encode(point_id: int, x, label: int) -> bytes:
    features = {
        "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[point_id])),
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=list(x))),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor):
    return tf.io.parse_example(serialized, SPEC)
