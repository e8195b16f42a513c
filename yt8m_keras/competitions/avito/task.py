"""The Avito network task: deal_probability from text, picture features, categories and numbers (RMSE).

What the one trainer and the one exporter need. `--set data.fold=K` holds out fold K (folds
are grouped by seller); the best checkpoint has the lowest validation RMSE. The network
reads the CNN features of `data.image_features` ("center" or "pad", from `yt8m-keras
features`) and starts its text encoder from a language model run when
`model.args.language_model` names one.
"""

import json
import os
from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import avito_ad as kind
from tfrecords.manifest import MANIFEST
from tfrecords.manifest import read_manifest as read_checked_manifest
from yt8m_keras.competitions.avito import input as data
from yt8m_keras.competitions.avito.preprocessing import (NUMERIC_DIM, AvitoPreprocessor, asset_names, read_assets,
                                                         weekday_of)
from yt8m_keras.models import build_registered

MONITOR = "val_rmse"
MONITOR_MODE = "min"
IMAGE_CNN = "image_cnn"  # the CNN SavedModel `yt8m-keras features` ran (exports run it in the graph)
BEST_WEIGHTS = "best.weights.h5"


def ASSETS(recipe):  # noqa: N802 -- the task interface's name; a function of the recipe here
    """Vocabularies, statistics and tokenizer; with image features, their info and the CNN."""
    extra = [IMAGE_CNN, os.path.join(data.IMAGE_FEATURES, "info.json")] if recipe.data.image_features else []
    return tuple(asset_names() + extra)


def read_manifest(data_dir: str) -> Dict:
    return read_checked_manifest(data_dir, kind=kind.KIND)


def read_classes(data_dir: str) -> List[Dict]:
    return [{"class_index": 0, "category_id": 0, "name": kind.TARGET}]


def preprocessor(recipe, directory: str) -> AvitoPreprocessor:
    return AvitoPreprocessor(**read_assets(directory), text_length=recipe.data.text_length, name="preprocessor")


def image_dim(recipe, directory: str) -> int:
    if not recipe.data.image_features:
        return 0
    if recipe.data.image_features not in ("center", "pad"):
        raise UserError(f"recipe key data.image_features: 'center', 'pad' or '', got {recipe.data.image_features!r}")
    path = os.path.join(directory, data.IMAGE_FEATURES, "info.json")
    if not tf.io.gfile.exists(path):
        raise UserError(f"no image features in {directory}: run `yt8m-keras features --data {directory}` first "
                        "(or --set data.image_features='')")
    with tf.io.gfile.GFile(path) as f:
        return int(json.load(f)["dim"])


def _language_model_weights(recipe, assets_dir: str) -> str:
    """The language model's weights file, when training starts (the data, not a run, holds the assets).

    A trained network's checkpoint already holds the encoder: rebuilding it (export,
    evaluation) does not need the language model run.
    """
    path = recipe.model.args.get("language_model", "")
    if not path or not tf.io.gfile.exists(os.path.join(assets_dir, MANIFEST)):
        return ""
    weights = os.path.join(path, BEST_WEIGHTS) if tf.io.gfile.isdir(path) else path
    if not tf.io.gfile.exists(weights):
        raise UserError(f"recipe key model.args.language_model: no {BEST_WEIGHTS} in {path} "
                        "(train it with --recipe avito_lm)")
    return weights


def build_model(recipe, num_classes: int, assets_dir: str) -> keras.Model:
    pre = preprocessor(recipe, assets_dir)
    model = build_registered(
        recipe, reserved=("vocabulary_sizes", "text_vocabulary_size", "numeric_dim", "image_dim", "text_length"),
        vocabulary_sizes=pre.vocabulary_sizes, text_vocabulary_size=pre.tokenizer.vocabulary_size(),
        numeric_dim=NUMERIC_DIM, image_dim=image_dim(recipe, assets_dir), text_length=recipe.data.text_length,
        resolved={"language_model": _language_model_weights(recipe, assets_dir)})
    model.preprocessor = pre  # tracked: an export carries the vocabularies and the tokenizer
    model.assets_dir = assets_dir  # where the exporter finds the CNN
    return model


def load_cnn(directory: str):
    """The CNN SavedModel the features were computed with, and its backbone.json."""
    path = os.path.join(directory, IMAGE_CNN)
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise UserError(f"no CNN SavedModel in {path}: run `yt8m-keras features` on the data before training")
    with tf.io.gfile.GFile(os.path.join(path, "backbone.json")) as f:
        info = json.load(f)
    return tf.saved_model.load(path), info


def set_stage(model: keras.Model, stage: str) -> None:
    if stage != "full":
        raise UserError(f"recipe key training.stages: the Avito models train one stage, 'full'; got {stage!r}")


def compile_args() -> Dict:
    return {"loss": keras.losses.MeanSquaredError(), "metrics": [keras.metrics.RootMeanSquaredError(name="rmse")]}


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    d = recipe.data
    return data.network_dataset(data_dir, preprocessor(recipe, data_dir), global_batch, d.fold, validation=False,
                                images=data.image_features(data_dir, d.image_features), seed=recipe.training.seed,
                                shuffle_buffer=d.shuffle_buffer, skip_batches=skip_batches)


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    d = recipe.data
    return data.network_dataset(data_dir, preprocessor(recipe, data_dir), global_batch, d.fold, validation=True,
                                images=data.image_features(data_dir, d.image_features))


# --- serving -------------------------------------------------------------------------------

RAW_STRINGS = (kind.TITLE, kind.DESCRIPTION, *kind.CATEGORICAL, "activation_date", kind.IMAGE)
RAW_NUMBERS = (kind.PRICE, kind.ITEM_SEQ_NUMBER)


def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """`serving_default`: an ad's raw fields -> deal_probability (and the network's features).

    Strings as in Kaggle's CSV ("" when empty), price and item_seq_number as floats (NaN when
    empty), the picture's JPEG bytes or "". Vocabularies, normalisation, tokenization and
    (with image features) the CNN with the features job's own preprocessing run in the graph.
    """
    from yt8m_keras.models.avito_network import features_model

    pre = model.preprocessor
    with_image = bool(recipe.data.image_features)
    head = keras.Model(model.inputs, [model.output, features_model(model).output])
    if with_image:
        from beam_jobs.avito_image_features import preprocess_fn

        cnn, info = load_cnn(model.assets_dir)
        model.image_cnn = cnn  # tracked: the export carries the CNN's variables
        size, variant = int(info["image_size"]), ("center", "pad").index(recipe.data.image_features)
        preprocess = preprocess_fn(size)

    def image_inputs(jpegs):
        present = tf.strings.length(jpegs) > 0

        def pixels(jpeg):
            return tf.cond(tf.strings.length(jpeg) > 0, lambda: preprocess(jpeg)[variant],
                           lambda: tf.zeros([size, size, 3], tf.uint8))

        images = tf.map_fn(pixels, jpegs, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        features = cnn.signatures["serving_default"](images=images)["features"]
        mask = tf.cast(present, tf.float32)[:, None]
        return {"image_features": features * mask, "image_mask": mask}

    spec = [tf.TensorSpec([None], tf.string, name=name) for name in RAW_STRINGS] + \
           [tf.TensorSpec([None], tf.float32, name=name) for name in RAW_NUMBERS]

    def outputs(raw):
        inputs = pre(raw)
        if with_image:
            inputs.update(image_inputs(raw[kind.IMAGE]))
        probability, features = head(inputs, training=False)
        return {kind.TARGET: probability[:, 0], "features": features}

    @tf.function(input_signature=spec)
    def serve(*fields):
        raw = dict(zip(RAW_STRINGS + RAW_NUMBERS, fields))
        raw[kind.WEEKDAY] = weekday_of(raw.pop("activation_date"))
        return outputs(raw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tf_example")])
    def serve_records(tf_example):
        # The records' own parser: serving reads converted ads exactly as training did.
        raw = kind.parse(tf_example)
        return {kind.ITEM_ID: raw[kind.ITEM_ID], **outputs(raw)}

    return {"serving_default": serve, "tf_example": serve_records}


def warmup_inputs(recipe) -> Dict[str, Dict[str, np.ndarray]]:
    strings = {name: np.array([b""], dtype=object) for name in RAW_STRINGS}
    strings.update({kind.TITLE: np.array(["Коляска".encode()], dtype=object),
                    "activation_date": np.array([b"2017-03-15"], dtype=object)})
    record = kind.encode("warmup", "warmup", 0, title="Коляска", price=1000.0, item_seq_number=10.0, weekday=2)
    return {"serving_default": {**strings, kind.PRICE: np.array([1000.0], np.float32),
                                kind.ITEM_SEQ_NUMBER: np.array([10.0], np.float32)},
            "tf_example": {"tf_example": np.array([record], dtype=object)}}
