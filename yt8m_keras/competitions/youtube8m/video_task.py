"""The YouTube-8M video-level task: frame-level records in, multi-label classes out.

The 7th place of the 3rd challenge pretrained NeXtVLAD and context-gated DBoF models at
video level before fine-tuning segment classifiers (`yt8m_segment`). Serving takes the
official serialized SequenceExamples and parses them with `tfrecords.yt8m_frame`, the
parser the training input uses.
"""

from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import yt8m_frame as kind
from tfrecords.manifest import read_classes  # noqa: F401 -- the task interface: classes.csv of the data
from tfrecords.manifest import read_manifest as _read_manifest
from yt8m_keras.competitions.youtube8m import input as data
from yt8m_keras.models import build_registered

KIND = kind
# Area under the precision-recall curve over all (video, class) pairs: a streaming
# stand-in for GAP, which `yt8m-keras evaluate` computes exactly.
MONITOR = "val_pr_auc"
MONITOR_MODE = "max"
FRAME_KEYS = (kind.RGB, kind.AUDIO, "mask")


def read_manifest(data_dir: str) -> Dict:
    return _read_manifest(data_dir, kind.KIND, kind.SCHEMA_VERSION)


def build_model(recipe, num_classes: int) -> keras.Model:
    return build_registered(recipe, num_classes=num_classes)


def set_stage(model: keras.Model, stage: str) -> None:
    if stage != "full":
        raise UserError(f"recipe key training.stages: this task trains the whole model ('full'), got {stage!r}")


def compile_args() -> Dict:
    return {"loss": keras.losses.BinaryCrossentropy(),
            "metrics": [keras.metrics.AUC(curve="PR", num_thresholds=500, name="pr_auc")]}


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    return data.video_dataset(data_dir, recipe.data.train_split, batch_size=global_batch,
                              max_frames=recipe.data.max_frames, shuffle=True, seed=recipe.training.seed,
                              repeat=True, shuffle_buffer=recipe.data.shuffle_buffer, skip_batches=skip_batches)


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    return data.video_dataset(data_dir, recipe.data.val_split, batch_size=global_batch,
                              max_frames=recipe.data.max_frames, shuffle=False, repeat=False, drop_remainder=False)


def class_ids(classes: List[Dict]) -> tf.Tensor:
    """Class index -> the original label id (the vocabulary's `Index`)."""
    return tf.constant([c["category_id"] for c in classes], tf.int64)


def top_k(predictions: tf.Tensor, ids: tf.Tensor, k: int) -> Dict[str, tf.Tensor]:
    scores, indices = tf.math.top_k(predictions, k=k)
    return {"predictions": predictions, "scores": scores, "class_ids": tf.gather(ids, indices)}


def parse_videos(serialized: tf.Tensor, num_classes: int, max_frames: int) -> Dict[str, tf.Tensor]:
    """A batch of serialized records -> `id` and the model's frame inputs (uint8 frames), by `yt8m_frame.parse`."""
    signature = {kind.ID: tf.TensorSpec([], tf.string),
                 kind.RGB: tf.TensorSpec([max_frames, kind.RGB_SIZE], tf.uint8),
                 kind.AUDIO: tf.TensorSpec([max_frames, kind.AUDIO_SIZE], tf.uint8),
                 "mask": tf.TensorSpec([max_frames], tf.float32)}

    def parse_one(record):
        video = kind.parse(record, num_classes, max_frames)
        return {key: video[key] for key in signature}

    return tf.map_fn(parse_one, serialized, fn_output_signature=signature)


def frame_specs(max_frames=None) -> Dict[str, tf.TensorSpec]:
    """The float frame inputs of the batch-prediction signatures: dequantized, as clients have them."""
    return {kind.RGB: tf.TensorSpec([None, max_frames, kind.RGB_SIZE], tf.float32, name=kind.RGB),
            kind.AUDIO: tf.TensorSpec([None, max_frames, kind.AUDIO_SIZE], tf.float32, name=kind.AUDIO),
            "mask": tf.TensorSpec([None, max_frames], tf.float32, name="mask")}


def quantized(frames: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Dequantized float frames -> the uint8 the models take (every other key unchanged).

    The models' Inputs are uint8 and a Keras model casts what it is given to them, so float
    frames must be quantized back, not passed on. `yt8m_frame.quantize_tensor` is exact on
    dequantized values (the same bytes come back, the model dequantizes them to the same
    floats): predictions equal those of the records the frames came from.
    """
    return {key: kind.quantize_tensor(value) if key.endswith((kind.RGB, kind.AUDIO)) else value
            for key, value in frames.items()}


def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """`serving_default`: serialized official SequenceExamples -> top-k classes and scores;
    `frames`: dequantized frame tensors (float32 `rgb`, `audio`, `mask`) -> predictions
    (batch prediction); the frames are quantized back to the uint8 the model takes
    (`quantized`: exact for dequantized values)."""
    num_classes, max_frames = len(classes), recipe.data.max_frames
    ids = class_ids(classes)
    k = min(recipe.export.top_k, num_classes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tf_example")])
    def serve_examples(tf_example):
        videos = parse_videos(tf_example, num_classes, max_frames)
        predictions = model({key: videos[key] for key in FRAME_KEYS}, training=False)
        return {"id": videos[kind.ID], **top_k(predictions, ids, k)}

    specs = frame_specs()

    @tf.function(input_signature=[specs[key] for key in FRAME_KEYS])
    def serve_frames(rgb, audio, mask):
        frames = quantized({kind.RGB: rgb, kind.AUDIO: audio, "mask": mask})
        return {"predictions": model(frames, training=False)}

    return {"serving_default": serve_examples, "frames": serve_frames}


def warmup_record(frames: int = 10) -> bytes:
    return kind.encode(b"warmup", [], np.full([frames, kind.RGB_SIZE], 128, np.uint8),
                       np.full([frames, kind.AUDIO_SIZE], 128, np.uint8))


def warmup_inputs(recipe) -> Dict[str, Dict[str, np.ndarray]]:
    frames = 10
    return {"serving_default": {"tf_example": np.array([warmup_record(frames)], dtype=object)},
            "frames": {kind.RGB: np.zeros([1, frames, kind.RGB_SIZE], np.float32),
                       kind.AUDIO: np.zeros([1, frames, kind.AUDIO_SIZE], np.float32),
                       "mask": np.ones([1, frames], np.float32)}}
