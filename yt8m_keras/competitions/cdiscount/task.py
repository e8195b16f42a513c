"""The Cdiscount task: one product, 1-4 JPEGs, one of thousands of categories.

Trained per image (each image carries its product's label); evaluated and predicted
per product by combining the predictions of its images (`combine.py`).
"""

from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import cdiscount_product as kind
from tfrecords.manifest import read_classes  # noqa: F401 -- the task interface: classes.csv of the data
from tfrecords.manifest import read_manifest as _read_manifest
from yt8m_keras.competitions.cdiscount.combine import parse_rule
from yt8m_keras.competitions.cdiscount import input as data
from yt8m_keras.data.images import decode
from yt8m_keras.models.xception import set_trainable_stage
from yt8m_keras.models import apply_stage, build_registered
from yt8m_keras.competitions.cdiscount.augment import CROP_PROBABILITY, CROP_SCALE, FLIP_PROBABILITY
from yt8m_keras.models.augmentation import CdiscountAugmentation

KIND = kind
MONITOR = "val_accuracy"
MONITOR_MODE = "max"


def read_manifest(data_dir: str) -> Dict:
    return _read_manifest(data_dir, kind.KIND, kind.SCHEMA_VERSION)


def build_model(recipe, num_classes: int) -> keras.Model:
    """The recipe's Xception; with `data.augment`, the seed's random crop and flip at its front.

    The augmentation runs in training only, batched on the accelerator; its seed state is
    a model variable, so the trainer's backups carry it and a resumed run draws the same
    crops and flips. Serving and evaluation (`training=False`) see the images unchanged.
    """
    augmentation = None
    if recipe.data.augment:
        augmentation = CdiscountAugmentation(crop_p=CROP_PROBABILITY, flip_p=FLIP_PROBABILITY, crop_scale=CROP_SCALE,
                                             seed=recipe.training.seed, name="augmentation")
    return build_registered(recipe, reserved=("augmentation",), num_classes=num_classes,
                            image_size=recipe.data.image_size, augmentation=augmentation)


def set_stage(model: keras.Model, stage: str) -> None:
    apply_stage(set_trainable_stage, model, stage)


def compile_args() -> Dict:
    return {
        "loss": keras.losses.SparseCategoricalCrossentropy(),
        "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                    keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
    }


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    return data.image_dataset(
        data_dir, recipe.data.train_split, batch_size=global_batch, image_size=recipe.data.image_size,
        shuffle=True, seed=recipe.training.seed, repeat=True,
        shuffle_buffer=recipe.data.shuffle_buffer, skip_batches=skip_batches)


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    return data.image_dataset(
        data_dir, recipe.data.val_split, batch_size=global_batch, image_size=recipe.data.image_size,
        shuffle=False, repeat=False, drop_remainder=False)


# --- serving -------------------------------------------------------------------------------

def _top_k(probabilities, category_ids, k):
    scores, indices = tf.math.top_k(probabilities, k=k)
    return {"probabilities": probabilities, "scores": scores,
            "category_ids": tf.gather(category_ids, indices)}


def _combine_tf(image_probs, row_ids, num_rows, rule: str):
    """The serving graph's per-product combination: `mean` or `power:A` (see combine.py)."""
    name, exponent = parse_rule(rule)
    if name not in ("mean", "power"):
        raise UserError(f"recipe key export.combine: serving supports mean and power:A, got {rule!r}")
    exponent = 1.0 if name == "mean" else float(exponent)
    powered = tf.math.unsorted_segment_mean(tf.pow(image_probs, exponent), row_ids, num_rows)
    combined = tf.pow(powered, 1.0 / exponent)
    return combined / tf.reduce_sum(combined, axis=-1, keepdims=True)


def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """`serving_default` (JPEG bytes), `products` (serialized records) and `pixels`."""
    size = recipe.data.image_size
    k = min(recipe.export.top_k, len(classes))
    category_ids = tf.constant([c["category_id"] for c in classes], tf.int64)

    def decode_all(jpegs):
        return tf.map_fn(lambda jpeg: decode(jpeg, size), jpegs,
                         fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_images(image_bytes):
        return _top_k(model(decode_all(image_bytes), training=False), category_ids, k)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tf_example")])
    def serve_products(tf_example):
        # The same parse as training: serving cannot drift from the records.
        features = kind.parse(tf_example)
        images = features[kind.IMAGES]
        probs = model(decode_all(images.values), training=False)
        combined = _combine_tf(probs, images.value_rowids(), images.nrows(), recipe.export.combine)
        return {"product_id": features[kind.PRODUCT_ID], **_top_k(combined, category_ids, k)}

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
    def serve_pixels(images):
        return {"probabilities": model(images, training=False)}

    return {"serving_default": serve_images, "products": serve_products, "pixels": serve_pixels}


def warmup_inputs(recipe) -> Dict[str, Dict[str, np.ndarray]]:
    """One small request per signature, replayed by TF Serving at load time."""
    jpeg = tf.io.encode_jpeg(tf.fill([recipe.data.image_size, recipe.data.image_size, 3], tf.constant(128, tf.uint8))).numpy()
    return {
        "serving_default": {"image_bytes": np.array([jpeg], dtype=object)},
        "products": {"tf_example": np.array([kind.encode(0, [jpeg, jpeg])], dtype=object)},
        "pixels": {"images": np.zeros([1, recipe.data.image_size, recipe.data.image_size, 3], np.float32)},
    }
