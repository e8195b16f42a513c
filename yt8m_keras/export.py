"""The one exporter: a training run's directory to a SavedModel that TF Serving loads as is.

    yt8m-keras export --model-dir MODEL --export-dir BASE [--name cdiscount] [--version N]

writes `BASE/NAME/VERSION/` (TF Serving's layout; without --version, one more than the
highest version there) with the task's signatures, `assets.extra/tf_serving_warmup_requests`
(one PredictRequest per signature, so the first real request is not the slow one) and
`assets.extra/classes.csv` (class index -> category id) and `assets.extra/recipe.yaml`
(the training recipe: batch prediction reads the task, sizes and context from it).
The version directory appears complete or not at all: it is written under a hidden
name first, and TF Serving ignores names that are not numbers.
"""

import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords.manifest import write_classes
from yt8m_keras.competitions import get_task
from yt8m_keras.train import load_trained, save_recipe

WARMUP_FILE = "tf_serving_warmup_requests"


def next_version(model_base: str) -> int:
    versions = [int(d) for d in tf.io.gfile.listdir(model_base) if d.strip("/").isdigit()] \
        if tf.io.gfile.isdir(model_base) else []
    return max(versions, default=0) + 1


def write_warmup(path: str, model_name: str, requests: Dict[str, Dict[str, np.ndarray]]) -> None:
    """Writes TF Serving warmup records: one PredictionLog per (signature, inputs)."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export(model_dir: str, export_base: str, name: Optional[str] = None, version: Optional[int] = None) -> str:
    """Exports the best weights of `model_dir`; returns `BASE/NAME/VERSION`."""
    recipe, classes, model = load_trained(model_dir)
    task = get_task(recipe.task)
    name = name or recipe.task
    model_base = os.path.join(export_base, name)
    version = next_version(model_base) if version is None else version
    if version < 1:
        raise UserError(f"--version must be a positive integer, got {version}")
    path = os.path.join(model_base, str(version))
    if tf.io.gfile.exists(path):
        raise UserError(f"{path} already exists: choose another --version")

    module = tf.Module()
    module.model = model
    signatures = task.serving_signatures(model, recipe, classes)
    module.signature_functions = signatures  # tracked, so the functions' variables are saved
    tmp = os.path.join(model_base, f".tmp-{version}")
    if tf.io.gfile.exists(tmp):
        tf.io.gfile.rmtree(tmp)
    tf.saved_model.save(module, tmp, signatures=signatures)
    extra = os.path.join(tmp, "assets.extra")
    tf.io.gfile.makedirs(extra)
    write_warmup(os.path.join(extra, WARMUP_FILE), name, task.warmup_inputs(recipe))
    write_classes(extra, classes)
    save_recipe(extra, recipe)
    tf.io.gfile.rename(tmp, path)
    return path
