"""`yt8m_frame`: the official YouTube-8M frame-level `tf.train.SequenceExample`, byte for byte.

Context: `id` (bytes), `labels` (int64 list); in the segment-rated shards of the 3rd
challenge also `segment_labels` (int64), `segment_start_times` (int64, seconds) and
`segment_scores` (float, 1 = the label is present in the 5 s segment, 0 = it is not).
Feature lists: `rgb` (one 1024-byte quantized string per frame, one frame per second)
and `audio` (128 bytes per frame).

`parse` decodes the frames to uint8 (the bytes as stored), pads or truncates them to
`max_frames` and returns a mask, so users' shards are read as they are. Dequantizing to
[-2, 2] (`dequantize`: x * 4/255 + 4/512 - 2, as the starter code's `Dequantize`) is left
to the model's first layer (`yt8m_keras.models.dequantize.Dequantize`, on the
accelerator): the host moves a quarter of the bytes and does no arithmetic.

Example:

>>> record = encode(b"vid1", [3], rgb=np.zeros([10, 1024], np.uint8), audio=np.zeros([10, 128], np.uint8))
>>> parse(tf.constant(record), num_classes=5)["num_frames"]
<tf.Tensor: shape=(), dtype=int32, numpy=10>
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrecords.features import bytes_feature, float_feature, int64_feature
from tfrecords.yt8m_quantization import BIAS, SCALE, quantize  # noqa: F401 (part of this kind's interface)

KIND = "yt8m_frame"
SCHEMA_VERSION = 1

ID = "id"
LABELS = "labels"
RGB = "rgb"
AUDIO = "audio"
SEGMENT_LABELS = "segment_labels"
SEGMENT_START_TIMES = "segment_start_times"
SEGMENT_SCORES = "segment_scores"

RGB_SIZE = 1024
AUDIO_SIZE = 128
MAX_FRAMES = 300
SEGMENT_FRAMES = 5

CONTEXT_FEATURES = {
    ID: tf.io.FixedLenFeature([], tf.string),
    LABELS: tf.io.VarLenFeature(tf.int64),
    SEGMENT_LABELS: tf.io.VarLenFeature(tf.int64),
    SEGMENT_START_TIMES: tf.io.VarLenFeature(tf.int64),
    SEGMENT_SCORES: tf.io.VarLenFeature(tf.float32),
}
SEQUENCE_FEATURES = {
    RGB: tf.io.FixedLenSequenceFeature([], tf.string),
    AUDIO: tf.io.FixedLenSequenceFeature([], tf.string),
}


def dequantize(quantized: tf.Tensor) -> tf.Tensor:
    """uint8 features -> float32 in [-2, 2]: the one definition of the formula (`SCALE`, `BIAS`)."""
    return tf.cast(quantized, tf.float32) * SCALE + BIAS


def quantize_tensor(features: tf.Tensor) -> tf.Tensor:
    """`quantize` in TensorFlow ops (for graphs, e.g. serving signatures that take float frames).

    Exact on dequantized features: `quantize_tensor(dequantize(q)) == q` for every uint8
    `q` (the round trip errs by ~1e-5 of a step before rounding). Other floats go to the
    nearest of the 256 levels, clipped to [0, 255].
    """
    steps = tf.round((tf.cast(features, tf.float32) - BIAS) / SCALE)
    return tf.cast(tf.clip_by_value(steps, 0.0, 255.0), tf.uint8)


def multi_hot(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """int labels -> float32 [num_classes]; labels outside the vocabulary are dropped."""
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    # A sum, not a max: a video without labels gives zeros, not -inf.
    return tf.minimum(tf.reduce_sum(one_hot, axis=0), 1.0)


def encode(video_id, labels: Sequence[int], rgb: np.ndarray, audio: np.ndarray,
           segment_labels: Optional[Sequence[int]] = None,
           segment_start_times: Optional[Sequence[int]] = None,
           segment_scores: Optional[Sequence[float]] = None) -> bytes:
    """Serializes one video in the official format.

    Args:
        video_id: str or bytes.
        labels: video-level label ids.
        rgb: uint8 [frames, 1024] (quantized, one row per second).
        audio: uint8 [frames, 128].
        segment_labels, segment_start_times, segment_scores: the segment ratings, or None.
    """
    rgb, audio = np.asarray(rgb), np.asarray(audio)
    if rgb.dtype != np.uint8 or audio.dtype != np.uint8:
        raise ValueError("rgb and audio must be quantized uint8 arrays (see quantize())")
    if rgb.ndim != 2 or rgb.shape[1] != RGB_SIZE or audio.ndim != 2 or audio.shape[1] != AUDIO_SIZE:
        raise ValueError(f"expected rgb [T, {RGB_SIZE}] and audio [T, {AUDIO_SIZE}], got {rgb.shape} and {audio.shape}")
    if len(rgb) != len(audio):
        raise ValueError(f"rgb has {len(rgb)} frames, audio {len(audio)}")
    context = {ID: bytes_feature([video_id.encode() if isinstance(video_id, str) else video_id]),
               LABELS: int64_feature(labels)}
    if segment_labels is not None:
        context[SEGMENT_LABELS] = int64_feature(segment_labels)
        context[SEGMENT_START_TIMES] = int64_feature(segment_start_times)
        context[SEGMENT_SCORES] = float_feature(segment_scores)
    example = tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list={
            RGB: tf.train.FeatureList(feature=[bytes_feature([row.tobytes()]) for row in rgb]),
            AUDIO: tf.train.FeatureList(feature=[bytes_feature([row.tobytes()]) for row in audio]),
        }))
    return example.SerializeToString(deterministic=True)


def _pad(frames: tf.Tensor, max_frames: int, size: int) -> tf.Tensor:
    frames = frames[:max_frames]
    padded = tf.pad(frames, [[0, max_frames - tf.shape(frames)[0]], [0, 0]])
    return tf.ensure_shape(padded, [max_frames, size])


def parse(serialized: tf.Tensor, num_classes: int, max_frames: int = MAX_FRAMES) -> dict:
    """Parses one serialized SequenceExample (a scalar string tensor).

    Returns:
        `id` (string), `labels` (multi-hot float32 [num_classes]), `label_ids` (int64 [n]),
        `rgb` (uint8 [max_frames, 1024], quantized as stored, zero after the last frame;
        `dequantize` gives the float features), `audio` (uint8 [max_frames, 128]),
        `num_frames` (int32, at most max_frames),
        `mask` (float32 [max_frames]), and `segment_labels`, `segment_start_times`,
        `segment_scores` (empty when the record has no ratings).
    """
    context, sequence = tf.io.parse_single_sequence_example(serialized, CONTEXT_FEATURES, SEQUENCE_FEATURES)
    rgb = tf.reshape(tf.io.decode_raw(sequence[RGB], tf.uint8), [-1, RGB_SIZE])
    audio = tf.reshape(tf.io.decode_raw(sequence[AUDIO], tf.uint8), [-1, AUDIO_SIZE])
    num_frames = tf.minimum(tf.shape(rgb)[0], max_frames)
    label_ids = tf.sparse.to_dense(context[LABELS])
    return {
        ID: context[ID],
        LABELS: multi_hot(label_ids, num_classes),
        "label_ids": label_ids,
        RGB: _pad(rgb, max_frames, RGB_SIZE),
        AUDIO: _pad(audio, max_frames, AUDIO_SIZE),
        "num_frames": num_frames,
        "mask": tf.sequence_mask(num_frames, max_frames, dtype=tf.float32),
        SEGMENT_LABELS: tf.sparse.to_dense(context[SEGMENT_LABELS]),
        SEGMENT_START_TIMES: tf.sparse.to_dense(context[SEGMENT_START_TIMES]),
        SEGMENT_SCORES: tf.sparse.to_dense(context[SEGMENT_SCORES]),
    }
