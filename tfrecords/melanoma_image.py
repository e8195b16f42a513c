"""`melanoma_image`: one dermoscopy image with its patient metadata, in Chris Deotte's format.

The SIIM-ISIC 2020 community trained on Deotte's TFRecords (`melanoma-512x512` and the
other sizes, `train%.2i-%i.tfrec`): a `tf.train.Example` per image with exactly these keys
and dtypes, which this kind keeps byte-compatible, so his shards read unchanged:

    image                          bytes   the JPEG, center-cropped square and resized
    image_name                     bytes   e.g. ISIC_2637011
    patient_id                     int64   integer code of the patient (-1: none, e.g. 2019 images)
    sex                            int64   code in `sex.csv` (-1: missing)
    age_approx                     int64   years (-1: missing)
    anatom_site_general_challenge  int64   code in `anatom_site_general_challenge.csv` (-1: missing)
    diagnosis                      int64   code in `diagnosis.csv` (-1: test)
    target                         int64   1 melanoma, 0 not (-1: test)

Our extra keys (readers of Deotte's format ignore them; his shards parse with their defaults):

    class_index     int64   one of the 9 winners' classes (`CLASSES`; -1: test)
    width, height   int64   the original image size (-1: unknown)
    file_size       int64   bytes of the original JPEG (-1: unknown)
    patient_images  int64   images of the same patient in the dataset (-1: unknown)
    source          int64   0: ISIC 2020, 1: ISIC 2019 (-1: unknown)
    fold            int64   the cross-validation fold (-1: test or a flagged duplicate)

Example:

>>> record = encode(jpeg, "ISIC_0000001", patient_id=3, sex=1, age_approx=45, site=2,
...                 diagnosis=5, target=0, class_index=CLASSES.index("nevus"))
>>> parse(tf.constant(record))["class_index"]
<tf.Tensor: shape=(), dtype=int64, numpy=7>
"""

from typing import Optional

import tensorflow as tf

from tfrecords.features import bytes_feature, int64_feature, parse_examples

KIND = "melanoma_image"
SCHEMA_VERSION = 1

IMAGE = "image"
IMAGE_NAME = "image_name"
PATIENT_ID = "patient_id"
SEX = "sex"
AGE = "age_approx"
SITE = "anatom_site_general_challenge"
DIAGNOSIS = "diagnosis"
TARGET = "target"
CLASS_INDEX = "class_index"
WIDTH = "width"
HEIGHT = "height"
FILE_SIZE = "file_size"
PATIENT_IMAGES = "patient_images"
SOURCE = "source"
FOLD = "fold"

MISSING = -1
SOURCE_2020, SOURCE_2019 = 0, 1

# The 1st place's 9 classes (sorted), the target of the 9-way softmax; the score is
# the AUC of P(melanoma).
CLASSES = ("AK", "BCC", "BKL", "DF", "SCC", "VASC", "melanoma", "nevus", "unknown")
MELANOMA = CLASSES.index("melanoma")
# 2020 diagnosis strings -> class (as the winners mapped them); absent strings map to unknown.
DIAGNOSIS_2020 = {
    "melanoma": "melanoma",
    "nevus": "nevus",
    "seborrheic keratosis": "BKL",
    "lichenoid keratosis": "BKL",
    "solar lentigo": "BKL",
    "lentigo NOS": "BKL",
    "cafe-au-lait macule": "unknown",
    "atypical melanocytic proliferation": "unknown",
    "unknown": "unknown",
}
# 2019 one-hot ground-truth columns -> class.
DIAGNOSIS_2019 = {"MEL": "melanoma", "NV": "nevus", "BCC": "BCC", "AK": "AK", "BKL": "BKL", "DF": "DF",
                  "VASC": "VASC", "SCC": "SCC", "UNK": "unknown"}

# Fixed, sorted vocabularies of the metadata the model sees, so a code means the same in
# every converted dataset (a data-derived vocabulary would shift when a value is absent).
SEXES = ("female", "male")
SITES = ("head/neck", "lower extremity", "oral/genital", "palms/soles", "torso", "upper extremity")
# The 2019 metadata splits the torso; the winners merged it into the 2020 site.
SITE_ALIASES = {"anterior torso": "torso", "posterior torso": "torso", "lateral torso": "torso"}

# Every key but the two strings is an int64 scalar, MISSING when absent (Deotte's test
# records have no diagnosis and no target; his shards have none of our extra keys).
INT_KEYS = (PATIENT_ID, SEX, AGE, SITE, DIAGNOSIS, TARGET, CLASS_INDEX, WIDTH, HEIGHT, FILE_SIZE, PATIENT_IMAGES,
            SOURCE, FOLD)
FEATURES = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    IMAGE_NAME: tf.io.FixedLenFeature([], tf.string),
    **{key: tf.io.FixedLenFeature([], tf.int64, default_value=MISSING) for key in INT_KEYS},
}


def class_of(diagnosis: str, source: int = SOURCE_2020) -> Optional[int]:
    """The 9-class index of a 2020 diagnosis string or a 2019 ground-truth column; None if unknown."""
    table = DIAGNOSIS_2020 if source == SOURCE_2020 else DIAGNOSIS_2019
    name = table.get(diagnosis)
    return None if name is None else CLASSES.index(name)


def encode(image: bytes, image_name: str, patient_id: int = MISSING, sex: int = MISSING,
           age_approx: int = MISSING, site: int = MISSING, diagnosis: int = MISSING, target: int = MISSING,
           class_index: int = MISSING, width: int = MISSING, height: int = MISSING, file_size: int = MISSING,
           patient_images: int = MISSING, source: int = MISSING, fold: int = MISSING) -> bytes:
    """Serializes one image as a `tf.train.Example` (deterministic bytes).

    Args:
        image: JPEG bytes.
        image_name: the ISIC image name.
        patient_id, sex, site, diagnosis: integer codes (MISSING when absent).
        age_approx: years, or MISSING.
        target: 1 melanoma, 0 not, MISSING for test images.
        class_index: index into CLASSES, MISSING for test images.
        width, height, file_size: of the original JPEG.
        patient_images: the patient's image count in the dataset.
        source: SOURCE_2020 or SOURCE_2019.
        fold: the cross-validation fold, MISSING for test images and flagged duplicates.
    """
    values = (patient_id, sex, age_approx, site, diagnosis, target, class_index, width, height, file_size,
              patient_images, source, fold)  # in INT_KEYS order
    feature = {IMAGE: bytes_feature([image]), IMAGE_NAME: bytes_feature([image_name.encode("utf-8")]),
               **{key: int64_feature([int(value)]) for key, value in zip(INT_KEYS, values)}}
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor) -> dict:
    """Parses a serialized record (scalar) or a batch (vector); absent keys get MISSING."""
    return parse_examples(serialized, FEATURES)


def shard_name(split: str, index: int, records: int) -> str:
    """Deotte's shard names: `train%.2i-%i.tfrec` % (index, records in the shard)."""
    return "%s%.2i-%i.tfrec" % (split, index, records)
