"""The metadata vector of the winners' metadata branch, from a record's (or a client's) fields.

sex (male 1, female 0, missing 0.5), age / 90 (missing 0.5), a one-hot of the anatomical
site with a slot for "missing", log1p(images of the patient) and log(original file size) / 10
(missing 0): 11 numbers. The same function serves the tf.data input and the serving
signatures, so training and serving cannot disagree.

Example:

>>> metadata(sex=tf.constant([1]), age=tf.constant([45]), site=tf.constant([4]),
...          patient_images=tf.constant([3]), file_size=tf.constant([250_000])).shape
TensorShape([1, 11])
"""

import tensorflow as tf

from tfrecords import melanoma_image as kind

METADATA_DIM = 2 + len(kind.SITES) + 1 + 2


def metadata(sex, age, site, patient_images, file_size) -> tf.Tensor:
    """float32 [..., METADATA_DIM] from integer codes (kind.MISSING where unknown)."""
    sex, age, site = (tf.cast(v, tf.int64) for v in (sex, age, site))
    patient_images, file_size = tf.cast(patient_images, tf.float32), tf.cast(file_size, tf.float32)
    sex_value = tf.where(sex == kind.MISSING, 0.5, tf.cast(sex, tf.float32))
    age_value = tf.where(age == kind.MISSING, 0.5, tf.cast(age, tf.float32) / 90.0)
    site_slot = tf.where((site < 0) | (site >= len(kind.SITES)), tf.cast(len(kind.SITES), tf.int64), site)
    site_onehot = tf.one_hot(site_slot, len(kind.SITES) + 1, dtype=tf.float32)
    count_value = tf.math.log1p(tf.maximum(patient_images, 1.0))
    size_value = tf.where(file_size > 0, tf.math.log(tf.maximum(file_size, 1.0)) / 10.0, 0.0)
    scalars = tf.stack([sex_value, age_value], axis=-1)
    return tf.concat([scalars, site_onehot, tf.stack([count_value, size_value], axis=-1)], axis=-1)


def codes_from_strings(sex: tf.Tensor, age: tf.Tensor, site: tf.Tensor):
    """(sex, age, site) codes from the strings a client (or Kaggle's CSV) has: "male", "45", "torso".

    Unknown or empty strings give kind.MISSING; a 2019 torso site maps to "torso". Plain
    string comparisons, no lookup tables: nothing for a SavedModel to track.
    """
    sex_code = _lookup(tf.strings.lower(sex), list(kind.SEXES), list(range(len(kind.SEXES))))
    site_code = _lookup(tf.strings.lower(site), list(kind.SITES) + list(kind.SITE_ALIASES),
                        list(range(len(kind.SITES))) + [kind.SITES.index(v) for v in kind.SITE_ALIASES.values()])
    valid = tf.strings.regex_full_match(age, r"\s*[0-9]+(\.[0-9]*)?\s*")
    age_number = tf.strings.to_number(tf.where(valid, age, "-1"), tf.float32)
    age_code = tf.where(age_number < 0, tf.constant(kind.MISSING, tf.int64), tf.cast(tf.round(age_number), tf.int64))
    return sex_code, age_code, site_code


def _lookup(values: tf.Tensor, keys, codes) -> tf.Tensor:
    matches = tf.equal(tf.expand_dims(values, -1), tf.constant(keys))
    found = tf.reduce_any(matches, axis=-1)
    code = tf.gather(tf.constant(codes, tf.int64), tf.argmax(tf.cast(matches, tf.int32), axis=-1))
    return tf.where(found, code, tf.constant(kind.MISSING, tf.int64))
