"""`avito_ad`: one classified ad of the Avito Demand Prediction Challenge (Kaggle 2018).

    item_id               bytes   the ad's id
    user_id               bytes   the seller (folds are grouped by it)
    row                   int64   the ad's row in the converted dataset (0..N-1 over all splits): its
                                  row in the image-feature memmaps and the out-of-fold files
    title, description    bytes   Russian text, as given ("" when empty)
    region ... image_top_1 bytes  the categorical columns as raw strings ("" when empty); the
                                  vocabularies (`vocab_<column>.txt`) map them to codes
    weekday               int64   weekday of activation_date, 0 Monday .. 6 Sunday (-1: unknown)
    price                 float   NaN when empty
    item_seq_number       float
    image                 bytes   the JPEG when the ad has a decodable picture, else ""
    image_name            bytes   the `image` column ("" when the ad has none)
    image_status          int64   NO_IMAGE, IMAGE_OK, IMAGE_MISSING (named, file absent), IMAGE_BROKEN
    deal_probability      float   the target in [0, 1]; -1 for test ads
    fold                  int64   the cross-validation fold (grouped by user_id); -1 for test ads

Example:

>>> record = encode("b912c3c6a6ad", "e00f8ff2eaf9", 0, title="Кокоби(кокон для сна)", region="Свердловская область",
...                 price=400.0, item_seq_number=2.0, weekday=1, deal_probability=0.12789, fold=3)
>>> parse(tf.constant(record))["region"].numpy().decode()
'Свердловская область'
"""

import math

import tensorflow as tf

from tfrecords.features import bytes_feature, float_feature, int64_feature, parse_examples

KIND = "avito_ad"
SCHEMA_VERSION = 1

ITEM_ID = "item_id"
USER_ID = "user_id"
ROW = "row"
TITLE = "title"
DESCRIPTION = "description"
TEXTS = (TITLE, DESCRIPTION)
# The categorical columns, in Kaggle's order (image_top_1 is a code of Avito's own image
# classifier: categorical, not a number).
CATEGORICAL = ("region", "city", "parent_category_name", "category_name", "param_1", "param_2", "param_3",
               "user_type", "image_top_1")
WEEKDAY = "weekday"
PRICE = "price"
ITEM_SEQ_NUMBER = "item_seq_number"
NUMBERS = (PRICE, ITEM_SEQ_NUMBER)
IMAGE = "image"
IMAGE_NAME = "image_name"
IMAGE_STATUS = "image_status"
TARGET = "deal_probability"
FOLD = "fold"

NO_IMAGE, IMAGE_OK, IMAGE_MISSING, IMAGE_BROKEN = 0, 1, 2, 3
MISSING = -1

FEATURES = {
    ITEM_ID: tf.io.FixedLenFeature([], tf.string),
    USER_ID: tf.io.FixedLenFeature([], tf.string),
    ROW: tf.io.FixedLenFeature([], tf.int64),
    **{key: tf.io.FixedLenFeature([], tf.string, default_value="") for key in TEXTS + CATEGORICAL},
    WEEKDAY: tf.io.FixedLenFeature([], tf.int64, default_value=MISSING),
    PRICE: tf.io.FixedLenFeature([], tf.float32, default_value=math.nan),
    ITEM_SEQ_NUMBER: tf.io.FixedLenFeature([], tf.float32, default_value=math.nan),
    IMAGE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    IMAGE_NAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
    IMAGE_STATUS: tf.io.FixedLenFeature([], tf.int64, default_value=NO_IMAGE),
    TARGET: tf.io.FixedLenFeature([], tf.float32, default_value=MISSING),
    FOLD: tf.io.FixedLenFeature([], tf.int64, default_value=MISSING),
}


def encode(item_id: str, user_id: str, row: int, title: str = "", description: str = "", weekday: int = MISSING,
           price: float = math.nan, item_seq_number: float = math.nan, image: bytes = b"", image_name: str = "",
           image_status: int = NO_IMAGE, deal_probability: float = MISSING, fold: int = MISSING,
           **categorical: str) -> bytes:
    """Serializes one ad as a `tf.train.Example` (deterministic bytes).

    Args:
        item_id, user_id: the ad's and the seller's ids.
        row: the ad's row in the converted dataset.
        title, description: the texts.
        weekday: of activation_date (0 Monday), or MISSING.
        price, item_seq_number: numbers, NaN when empty.
        image: the JPEG bytes of a decodable picture, else b"".
        image_name: the picture's name from the CSV.
        image_status: NO_IMAGE, IMAGE_OK, IMAGE_MISSING or IMAGE_BROKEN.
        deal_probability: the target, MISSING for test ads.
        fold: the cross-validation fold, MISSING for test ads.
        **categorical: values of CATEGORICAL columns (absent: "").
    """
    unknown = set(categorical) - set(CATEGORICAL)
    if unknown:
        raise ValueError(f"not categorical columns: {sorted(unknown)}")
    strings = {ITEM_ID: item_id, USER_ID: user_id, TITLE: title, DESCRIPTION: description, IMAGE_NAME: image_name,
               **{key: categorical.get(key, "") for key in CATEGORICAL}}
    feature = {
        **{key: bytes_feature([value.encode("utf-8")]) for key, value in strings.items()},
        ROW: int64_feature([int(row)]), WEEKDAY: int64_feature([int(weekday)]),
        IMAGE_STATUS: int64_feature([int(image_status)]), FOLD: int64_feature([int(fold)]),
        PRICE: float_feature([float(price)]), ITEM_SEQ_NUMBER: float_feature([float(item_seq_number)]),
        TARGET: float_feature([float(deal_probability)]), IMAGE: bytes_feature([image]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor) -> dict:
    """Parses a serialized record (scalar) or a batch (vector)."""
    return parse_examples(serialized, FEATURES)
