"""An ad's raw fields -> the network's inputs: vocabulary codes, normalised numbers, token ids.

One Keras layer (`AvitoPreprocessor`) used by the tf.data streams and by the serving
signature, so training and serving cannot encode an ad apart. Its vocabularies, number
statistics and tokenizer come from the converted data (`vocab_<column>.txt`, `stats.json`,
`vocabulary.spm`) and live in the layer, so an exported model carries them.

Codes: 0 is unknown or empty, i + 1 the i-th line of the column's vocabulary; weekday is
its own code (0 unknown, 1 Monday .. 7 Sunday).
"""

import json
import os
from typing import Dict, List

import keras
import tensorflow as tf

from tfrecords import UserError
from tfrecords import avito_ad as kind

STATS = "stats.json"
TOKENIZER = "vocabulary.spm"
WEEKDAY_CODES = 8
NUMERIC_DIM = 4  # log1p price and log1p item_seq_number, standardised, and their missing flags


def vocabulary_file(column: str) -> str:
    return f"vocab_{column}.txt"


def asset_names() -> List[str]:
    """The converted data's files the preprocessing is built from."""
    return [vocabulary_file(c) for c in kind.CATEGORICAL] + [STATS, TOKENIZER]


def read_assets(directory: str) -> Dict:
    """{"vocabularies": {column: [values]}, "stats": {...}, "tokenizer": proto bytes} from a data or run directory."""
    def read(name, mode="r"):
        path = os.path.join(directory, name)
        if not tf.io.gfile.exists(path):
            raise UserError(f"no {name} in {directory}: convert the data with `yt8m-keras convert avito`")
        with tf.io.gfile.GFile(path, mode) as f:
            return f.read()

    vocabularies = {c: [line for line in read(vocabulary_file(c)).split("\n") if line] for c in kind.CATEGORICAL}
    return {"vocabularies": vocabularies, "stats": json.loads(read(STATS)), "tokenizer": read(TOKENIZER, "rb")}


def weekday_of(dates: tf.Tensor) -> tf.Tensor:
    """Weekdays (0 Monday .. 6 Sunday, -1 unparseable, as records hold them) of "YYYY-MM-DD" strings, in the graph.

    Days since 1970-01-01 by Howard Hinnant's days_from_civil; that day was a Thursday.
    """
    parts = tf.strings.split(tf.strings.substr(dates, 0, 10), "-").to_tensor("", shape=[None, 3])
    valid = tf.strings.regex_full_match(tf.strings.substr(dates, 0, 10), r"\d{4}-\d{2}-\d{2}")
    numbers = tf.strings.to_number(tf.where(valid[:, None], parts, "1"), tf.int64)
    y, m, d = numbers[:, 0] - tf.cast(numbers[:, 1] <= 2, tf.int64), numbers[:, 1], numbers[:, 2]
    era = tf.math.floordiv(y, 400)
    year_of_era = y - era * 400
    day_of_year = (153 * (m + tf.where(m > 2, tf.constant(-3, tf.int64), 9)) + 2) // 5 + d - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146097 + day_of_era - 719468
    return tf.where(valid, tf.math.floormod(days + 3, 7), tf.constant(kind.MISSING, tf.int64))


class AvitoPreprocessor(keras.layers.Layer):
    """Raw ad fields (tensors) -> the network's inputs, less the image features.

    Args:
        vocabularies: column -> sorted values (codes 1..n; 0 unknown or empty).
        stats: `stats.json` of the conversion: {"price": {"log1p_mean", "log1p_std"}, "item_seq_number": ...}.
        tokenizer: a SentencePiece proto (0 padding).
        text_length: tokens of title + description kept.

    Example:
        >>> pre = AvitoPreprocessor(**read_assets("DATA"), text_length=100)
        >>> pre({"region": tf.constant(["Свердловская область"]), ...})["region"]
    """

    def __init__(self, vocabularies: Dict[str, List[str]], stats: Dict, tokenizer: bytes, text_length: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        import keras_hub

        self.text_length = text_length
        self.stats = stats
        # mask_token=None, one OOV index: code 0 for anything not in the vocabulary ("" included).
        self.lookups = {c: keras.layers.StringLookup(vocabulary=values or ["\x00"], num_oov_indices=1,
                                                     name=f"{c}_lookup")
                        for c, values in vocabularies.items()}
        self.tokenizer = keras_hub.tokenizers.SentencePieceTokenizer(proto=tokenizer, name="tokenizer")
        self.vocabulary_sizes = {c: len(values) + 1 for c, values in vocabularies.items()}
        self.vocabulary_sizes[kind.WEEKDAY] = WEEKDAY_CODES

    def _standardised(self, values, name):
        stats = self.stats[name]  # null mean and std when the data had no value at all
        mean, std = stats.get("log1p_mean") or 0.0, stats.get("log1p_std") or 1.0
        present = tf.math.is_finite(values)
        z = (tf.math.log1p(tf.maximum(tf.where(present, values, 0.0), 0.0)) - mean) / max(std, 1e-6)
        return tf.where(present, z, 0.0), tf.cast(~present, tf.float32)

    def call(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        out = {c: tf.cast(lookup(features[c]), tf.int32) for c, lookup in self.lookups.items()}
        out[kind.WEEKDAY] = tf.cast(features[kind.WEEKDAY], tf.int32) + 1  # the record's -1 (unknown) -> 0
        price, price_missing = self._standardised(tf.cast(features[kind.PRICE], tf.float32), kind.PRICE)
        sequence, sequence_missing = self._standardised(tf.cast(features[kind.ITEM_SEQ_NUMBER], tf.float32),
                                                        kind.ITEM_SEQ_NUMBER)
        out["numbers"] = tf.stack([price, price_missing, sequence, sequence_missing], axis=1)
        out["text"] = self.token_ids(features[kind.TITLE], features[kind.DESCRIPTION])
        return out

    def token_ids(self, title, description) -> tf.Tensor:
        # One text, title first; stripped, so an ad without either has no tokens at all.
        tokens = self.tokenizer(tf.strings.strip(tf.strings.join([title, description], separator="\n")))
        if isinstance(tokens, list):  # KerasHub's eager output for ragged results
            tokens = tf.ragged.constant(tokens, dtype=tf.int32, ragged_rank=1)
        return tf.cast(tokens[:, :self.text_length].to_tensor(0, shape=[None, self.text_length]), tf.int32)

    def get_config(self):
        return {**super().get_config(), "text_length": self.text_length}
