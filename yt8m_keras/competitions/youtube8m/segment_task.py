"""The YouTube-8M segment task: is class c present in this 5-second segment?

Fine-tunes a pretrained video-level run (`model.args.pretrained`: its model directory)
into a segment classifier, as the 7th place of the 3rd challenge did:

- `segment_agnostic`: the video model applied to the segment's frames (the 5 seconds
  widened by `data.context_frames` on each side);
- `segment_aware`: a frozen copy of the video encoder reads the whole video, a trainable
  copy (layers prefixed `segment_encoder_`; give it a lower rate with
  `training.lr_multipliers: {segment_encoder_: 0.1}`) reads the segment.

Trained on the rated segments of `data.train_split` (the 3rd challenge's validate set)
minus a holdout of `data.holdout_fraction` of its videos, on which it is validated.
Loss: binary cross-entropy on the rated class plus down-weighted BCE on mined negatives
(the data pipeline's targets and weights, see `yt8m_keras/data/yt8m.py`).
"""

import dataclasses
from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import yt8m_frame as kind
from yt8m_keras.competitions.youtube8m import input as data
from yt8m_keras.models.segment import (SEGMENT_INPUT_NAMES, VIDEO_INPUT_NAMES, clone_encoder,
                                       video_embedding_model)
from yt8m_keras.competitions.youtube8m.video_task import (FRAME_KEYS, class_ids, frame_specs, quantized,
                                                          read_classes, read_manifest, set_stage, top_k,
                                                          warmup_record)
from yt8m_keras.models import build_registered
from yt8m_keras.recipes import ModelConfig

KIND = kind
MONITOR = "val_loss"
MONITOR_MODE = "min"
INPUT_KEYS = SEGMENT_INPUT_NAMES + VIDEO_INPUT_NAMES
_EPSILON = 1e-7

__all__ = ["read_classes", "read_manifest", "set_stage", "build_model", "compile_args", "train_dataset", "val_dataset",
           "serving_signatures", "warmup_inputs", "weighted_bce"]


def build_model(recipe, num_classes: int) -> keras.Model:
    from yt8m_keras.train import load_trained  # the trainer imports tasks: import at use

    args = dict(recipe.model.args)
    pretrained = args.pop("pretrained", None)
    if not pretrained:
        raise UserError("recipe key model.args.pretrained: the model directory of a video-level training run")
    _, classes, video_model = load_trained(pretrained)
    if len(classes) != num_classes:
        raise UserError(f"the pretrained run {pretrained} has {len(classes)} classes, the data {num_classes}: "
                        "convert both with the same --vocabulary")
    recipe = dataclasses.replace(recipe, model=ModelConfig(recipe.model.name, args))
    if recipe.model.name == "segment_agnostic":
        return build_registered(recipe, video_model=video_model)
    encoder = video_embedding_model(video_model)
    return build_registered(recipe, video_encoder=encoder, segment_encoder=clone_encoder(encoder),
                            num_classes=num_classes)


def weighted_bce(y_true, y_pred):
    """Per segment: sum(weights * BCE(targets, p)) / sum(weights); y_true is [B, 2, C]."""
    targets, weights = y_true[:, 0], y_true[:, 1]
    p = keras.ops.clip(keras.ops.cast(y_pred, "float32"), _EPSILON, 1 - _EPSILON)
    bce = -(targets * keras.ops.log(p) + (1 - targets) * keras.ops.log(1 - p))
    return keras.ops.sum(weights * bce, axis=-1) / keras.ops.maximum(keras.ops.sum(weights, axis=-1), _EPSILON)


def compile_args() -> Dict:
    return {"loss": weighted_bce}


def _segments(recipe, data_dir: str, global_batch: int, holdout: bool, **kwargs) -> tf.data.Dataset:
    split = recipe.data.val_split if holdout else recipe.data.train_split
    return data.segment_dataset(
        data_dir, split, batch_size=global_batch, context_frames=recipe.data.context_frames,
        max_frames=recipe.data.max_frames, negative_weight=recipe.data.negative_weight, seed=recipe.training.seed,
        shuffle_buffer=recipe.data.shuffle_buffer, holdout_fraction=recipe.data.holdout_fraction, holdout=holdout,
        **kwargs)


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    return _segments(recipe, data_dir, global_batch, holdout=False, skip_batches=skip_batches)


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    return _segments(recipe, data_dir, global_batch, holdout=True, shuffle=False, repeat=False,
                     drop_remainder=False)


def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """`serving_default`: serialized official SequenceExamples -> every segment (stride 5)
    with its top-k classes and scores; `segments`: segment and video frames (dequantized,
    float32) -> predictions, the frames quantized back to the uint8 the model takes
    (`video_task.quantized`: exact for dequantized values)."""
    num_classes, max_frames = len(classes), recipe.data.max_frames
    ids = class_ids(classes)
    k = min(recipe.export.top_k, num_classes)
    segments_per_video = data.max_segments(max_frames)
    signature = {kind.ID: tf.TensorSpec([], tf.string), "start_time": tf.TensorSpec([segments_per_video], tf.int64),
                 **{key: tf.TensorSpec(spec.shape[1:], tf.float32 if key == "mask" else tf.uint8)
                    for key, spec in frame_specs(max_frames).items()}}

    def parse_one(record):
        video = kind.parse(record, num_classes, max_frames)
        starts = tf.cast(data.inference_start_times(video["num_frames"]), tf.int64)
        starts = tf.pad(starts, [[0, segments_per_video - tf.shape(starts)[0]]], constant_values=-1)
        return {kind.ID: video[kind.ID], "start_time": starts, **{key: video[key] for key in FRAME_KEYS}}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tf_example")])
    def serve_examples(tf_example):
        videos = tf.map_fn(parse_one, tf_example, fn_output_signature=signature)
        segments = data.flatten_segments(videos, recipe.data.context_frames)
        predictions = model({key: segments[key] for key in INPUT_KEYS}, training=False)
        return {"id": segments[kind.ID], "start_time": segments["start_time"], **top_k(predictions, ids, k)}

    whole = frame_specs()
    window = {f"segment_{key}": tf.TensorSpec(spec.shape, tf.float32, name=f"segment_{key}")
              for key, spec in whole.items()}
    specs = {**window, **whole}

    @tf.function(input_signature=[specs[key] for key in INPUT_KEYS])
    def serve_segments(segment_rgb, segment_audio, segment_mask, rgb, audio, mask):
        inputs = quantized(dict(zip(INPUT_KEYS, (segment_rgb, segment_audio, segment_mask, rgb, audio, mask))))
        return {"predictions": model(inputs, training=False)}

    return {"serving_default": serve_examples, "segments": serve_segments}


def warmup_inputs(recipe) -> Dict[str, Dict[str, np.ndarray]]:
    frames, window = 10, data.window_length(recipe.data.context_frames)
    return {"serving_default": {"tf_example": np.array([warmup_record(frames)], dtype=object)},
            "segments": {"segment_rgb": np.zeros([1, window, kind.RGB_SIZE], np.float32),
                         "segment_audio": np.zeros([1, window, kind.AUDIO_SIZE], np.float32),
                         "segment_mask": np.ones([1, window], np.float32),
                         "rgb": np.zeros([1, frames, kind.RGB_SIZE], np.float32),
                         "audio": np.zeros([1, frames, kind.AUDIO_SIZE], np.float32),
                         "mask": np.ones([1, frames], np.float32)}}
