"""`yt8m_video`: the official YouTube-8M video-level `tf.train.Example`.

`id` (bytes), `labels` (int64 list), `mean_rgb` (1024 floats), `mean_audio` (128 floats):
the frame features averaged over the video, already dequantized.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from tfrecords.features import bytes_feature, float_feature, int64_feature, parse_examples
from tfrecords.yt8m_frame import AUDIO_SIZE, RGB_SIZE, multi_hot

KIND = "yt8m_video"
SCHEMA_VERSION = 1

ID = "id"
LABELS = "labels"
MEAN_RGB = "mean_rgb"
MEAN_AUDIO = "mean_audio"

FEATURES = {
    ID: tf.io.FixedLenFeature([], tf.string),
    LABELS: tf.io.VarLenFeature(tf.int64),
    MEAN_RGB: tf.io.FixedLenFeature([RGB_SIZE], tf.float32),
    MEAN_AUDIO: tf.io.FixedLenFeature([AUDIO_SIZE], tf.float32),
}


def encode(video_id, labels: Sequence[int], mean_rgb: np.ndarray, mean_audio: np.ndarray) -> bytes:
    example = tf.train.Example(features=tf.train.Features(feature={
        ID: bytes_feature([video_id.encode() if isinstance(video_id, str) else video_id]),
        LABELS: int64_feature(labels),
        MEAN_RGB: float_feature(np.asarray(mean_rgb, np.float32).reshape(RGB_SIZE)),
        MEAN_AUDIO: float_feature(np.asarray(mean_audio, np.float32).reshape(AUDIO_SIZE)),
    }))
    return example.SerializeToString(deterministic=True)


def parse(serialized: tf.Tensor, num_classes: int) -> dict:
    """One serialized record (scalar) -> `id`, `labels` (multi-hot [num_classes]), `mean_rgb`, `mean_audio`."""
    features = parse_examples(serialized, FEATURES)
    return {ID: features[ID], LABELS: multi_hot(tf.sparse.to_dense(features[LABELS]), num_classes),
            MEAN_RGB: features[MEAN_RGB], MEAN_AUDIO: features[MEAN_AUDIO]}
