"""`product_text`: one receipt line (IndoML 2024 datathon) with its taxonomy labels when known.

    indoml_id    int64    the datathon's id
    description  bytes    the receipt text, as given (UTF-8)
    retailer     bytes    the anonymised retailer
    price        float    the price (float32)
    supergroup   bytes    } the four targets: a strict hierarchy supergroup > group > module,
    group        bytes    } and a brand valid under the module; all four empty for test lines
    module       bytes    }
    brand        bytes    }

The model's text in and out are declared here too (`input_text`, `target_text` in Python
for the tokenizer's training text; `input_text_tensor` in TensorFlow for tf.data and the
serving signature), so the conversion, training and serving cannot format them apart.

Example:

>>> record = encode(7, "indomie goreng 85g", "retailer_3", 3.5, ("Food", "Noodles", "Instant", "Indomie"))
>>> parse(tf.constant(record))["module"]
<tf.Tensor: shape=(), dtype=string, numpy=b'Instant'>
>>> input_text("indomie goreng 85g", "retailer_3", 3.5)
'indomie goreng 85g | retailer_3 | 3.50'
>>> target_text(("Food", "Noodles", "Instant", "Indomie"))
'Food > Noodles > Instant | Indomie'
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrecords.features import bytes_feature, float_feature, int64_feature, parse_examples

KIND = "product_text"
SCHEMA_VERSION = 1

ID = "indoml_id"
DESCRIPTION = "description"
RETAILER = "retailer"
PRICE = "price"
SUPERGROUP = "supergroup"
GROUP = "group"
MODULE = "module"
BRAND = "brand"
TEXT_FIELDS = (DESCRIPTION, RETAILER)
LABELS = (SUPERGROUP, GROUP, MODULE, BRAND)  # the hierarchy's order

FEATURES = {
    ID: tf.io.FixedLenFeature([], tf.int64),
    PRICE: tf.io.FixedLenFeature([], tf.float32),
    **{key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in TEXT_FIELDS + LABELS},
}

# The target's separators: "supergroup > group > module | brand" (the datathon's reading order).
LEVEL_SEPARATOR = " > "
BRAND_SEPARATOR = " | "
INPUT_SEPARATOR = " | "


def encode(indoml_id: int, description: str, retailer: str, price: float,
           labels: Optional[Sequence[str]] = None) -> bytes:
    """Serializes one line as a `tf.train.Example` (deterministic bytes).

    Args:
        indoml_id: the line's id.
        description, retailer: the input strings.
        price: the price.
        labels: (supergroup, group, module, brand), or None for a test line.
    """
    labels = labels or ("",) * len(LABELS)
    feature = {
        ID: int64_feature([int(indoml_id)]),
        PRICE: float_feature([float(price)]),
        DESCRIPTION: bytes_feature([description.encode("utf-8")]),
        RETAILER: bytes_feature([retailer.encode("utf-8")]),
        **{key: bytes_feature([value.encode("utf-8")]) for key, value in zip(LABELS, labels)},
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor) -> dict:
    """Parses a serialized record (scalar) or a batch (vector)."""
    return parse_examples(serialized, FEATURES)


def input_text(description: str, retailer: str, price: float) -> str:
    """The encoder's text. The price is rounded as float32, as the record stores it."""
    return f"{description}{INPUT_SEPARATOR}{retailer}{INPUT_SEPARATOR}{float(np.float32(price)):.2f}"


def input_text_tensor(description: tf.Tensor, retailer: tf.Tensor, price: tf.Tensor) -> tf.Tensor:
    """`input_text` in TensorFlow (the same "%.2f" of the float32 price)."""
    price = tf.strings.as_string(tf.cast(price, tf.float32), precision=2)
    return tf.strings.join([description, INPUT_SEPARATOR, retailer, INPUT_SEPARATOR, price])


def target_text(labels: Sequence[str]) -> str:
    """The decoder's text: "supergroup > group > module | brand"."""
    supergroup, group, module, brand = labels
    return LEVEL_SEPARATOR.join((supergroup, group, module)) + BRAND_SEPARATOR + brand


def target_text_tensor(supergroup, group, module, brand) -> tf.Tensor:
    return tf.strings.join([supergroup, LEVEL_SEPARATOR, group, LEVEL_SEPARATOR, module, BRAND_SEPARATOR, brand])


def labels_of(text: str) -> Optional[tuple]:
    """The four fields of a generated target text, or None when it does not have that shape."""
    head, sep, brand = text.rpartition(BRAND_SEPARATOR)
    levels = head.split(LEVEL_SEPARATOR)
    if not sep or len(levels) != 3:
        return None
    return (*(level.strip() for level in levels), brand.strip())
