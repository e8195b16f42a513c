"""`cdiscount_product`: one Cdiscount product with its 1-4 JPEG images.

One record per product, as in the competition's BSON (`{_id, category_id, imgs}`);
the JPEG bytes are copied unchanged so no quality is lost before training.

Example:

>>> record = encode(product_id=42, images=[jpeg_bytes], category_id=1000010653, label=3)
>>> parse(tf.constant(record))["num_images"]
<tf.Tensor: shape=(), dtype=int64, numpy=1>
"""

from typing import Sequence

import tensorflow as tf

from tfrecords.features import bytes_feature, int64_feature, parse_examples

KIND = "cdiscount_product"
SCHEMA_VERSION = 1

PRODUCT_ID = "product_id"
CATEGORY_ID = "category_id"
LABEL = "label"
IMAGES = "images"
NUM_IMAGES = "num_images"

# Label and category of a product whose category is not known (the test split).
UNKNOWN = -1
MAX_IMAGES = 4

FEATURES = {
    PRODUCT_ID: tf.io.FixedLenFeature([], tf.int64),
    CATEGORY_ID: tf.io.FixedLenFeature([], tf.int64, default_value=UNKNOWN),
    LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=UNKNOWN),
    # Ragged: a product has 1 to MAX_IMAGES pictures.
    IMAGES: tf.io.RaggedFeature(tf.string),
    NUM_IMAGES: tf.io.FixedLenFeature([], tf.int64),
}


def encode(
    product_id: int,
    images: Sequence[bytes],
    category_id: int = UNKNOWN,
    label: int = UNKNOWN,
) -> bytes:
    """Serializes one product as a `tf.train.Example`.

    Args:
        product_id: the BSON document's `_id`.
        images: 1 to MAX_IMAGES JPEG byte strings, in the document's order.
        category_id: the Cdiscount category id, or UNKNOWN.
        label: the class index of `category_id` in `classes.csv`, or UNKNOWN.
    """
    if not 1 <= len(images) <= MAX_IMAGES:
        raise ValueError(f"a product has 1 to {MAX_IMAGES} images, got {len(images)}")
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                PRODUCT_ID: int64_feature([product_id]),
                CATEGORY_ID: int64_feature([category_id]),
                LABEL: int64_feature([label]),
                IMAGES: bytes_feature(images),
                NUM_IMAGES: int64_feature([len(images)]),
            }
        )
    )
    # Deterministic: map entries in key order, so the bytes do not depend on the
    # process (hash seed) that wrote them and reconverting gives identical shards.
    return example.SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor) -> dict:
    """Parses a serialized record (scalar) or a batch (vector) into tensors.

    `images` is a 1-D string tensor for one record and a `tf.RaggedTensor`
    `[batch, (num_images)]` for a batch.
    """
    return parse_examples(serialized, FEATURES)
