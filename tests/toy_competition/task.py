"""The toy task: what the one trainer and the one exporter need."""

import keras
import numpy as np
import tensorflow as tf

from tfrecords.manifest import compression_type, read_classes, read_manifest as _read_manifest, shard_paths  # noqa: F401 (read_classes: task interface)
from toy_competition import kind

MONITOR = "val_accuracy"
MONITOR_MODE = "max"


def read_manifest(data_dir):
    return _read_manifest(data_dir, kind.KIND, kind.SCHEMA_VERSION)


def build_model(recipe, num_classes):
    inputs = keras.Input((kind.DIM,), name="x")
    hidden = keras.layers.Dense(recipe.model.args.get("units", 16), activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(hidden), name="toy")


def set_stage(model, stage):
    pass


def compile_args():
    return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}


def dataset(recipe, data_dir, split, batch, repeat=False, skip_batches=0):
    manifest = read_manifest(data_dir)
    ds = tf.data.TFRecordDataset(shard_paths(data_dir, manifest, split), compression_type(manifest))
    if repeat:
        ds = ds.shuffle(64, seed=recipe.training.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch, drop_remainder=repeat).map(kind.parse).map(lambda f: (f["x"], f["label"]))
    return ds.skip(skip_batches)


def train_dataset(recipe, data_dir, global_batch, skip_batches=0):
    return dataset(recipe, data_dir, recipe.data.train_split, global_batch, repeat=True, skip_batches=skip_batches)


def val_dataset(recipe, data_dir, global_batch):
    return dataset(recipe, data_dir, recipe.data.val_split, global_batch)


def serving_signatures(model, recipe, classes):
    category_ids = tf.constant([c["category_id"] for c in classes], tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tf_example")])
    def tf_example(serialized):
        probabilities = model(kind.parse(serialized)["x"], training=False)
        return {"probabilities": probabilities, "category_ids": tf.gather(category_ids, tf.argmax(probabilities, 1))}

    return {"serving_default": tf_example}


def warmup_inputs(recipe):
    return {"serving_default": {"tf_example": np.array([kind.encode(0, [0.0] * kind.DIM, -1)])}}
