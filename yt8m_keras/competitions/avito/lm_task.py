"""The Avito language model task: next subword of title + description (ULMFiT's pretraining step).

Trains `lstm_language_model` (tied embeddings) on the ads' text of train and test, holding
out the training ads of `data.fold`; the best checkpoint has the lowest validation
perplexity. The network (`avito_nn`) starts its text encoder from it:
`--set model.args.language_model=LM_RUN`.
"""

from typing import Dict, List

import keras
import tensorflow as tf

from yt8m_keras.competitions.avito import input as data
from yt8m_keras.competitions.avito.preprocessing import AvitoPreprocessor, asset_names, read_assets
from yt8m_keras.competitions.avito.task import read_manifest  # noqa: F401 -- the same data
from yt8m_keras.models import build_registered

MONITOR = "val_perplexity"
MONITOR_MODE = "min"
ASSETS = tuple(asset_names())


def read_classes(data_dir: str) -> List[Dict]:
    return [{"class_index": 0, "category_id": 0, "name": "next_token"}]


def preprocessor(recipe, directory: str) -> AvitoPreprocessor:
    # One token more than the network reads: inputs and next-token targets are both text_length long.
    return AvitoPreprocessor(**read_assets(directory), text_length=recipe.data.text_length + 1)


def build_model(recipe, num_classes: int, assets_dir: str) -> keras.Model:
    vocabulary_size = preprocessor(recipe, assets_dir).tokenizer.vocabulary_size()
    return build_registered(recipe, reserved=("vocabulary_size",), vocabulary_size=vocabulary_size)


def set_stage(model: keras.Model, stage: str) -> None:
    from yt8m_keras.competitions.avito.task import set_stage as set_network_stage

    set_network_stage(model, stage)


def compile_args() -> Dict:
    import keras_hub

    return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "weighted_metrics": [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")],
            "metrics": [keras_hub.metrics.Perplexity(from_logits=True, mask_token_id=0, name="perplexity")]}


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    d = recipe.data
    return data.language_model_dataset(data_dir, preprocessor(recipe, data_dir), global_batch, d.fold,
                                       validation=False, seed=recipe.training.seed, shuffle_buffer=d.shuffle_buffer,
                                       skip_batches=skip_batches)


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    return data.language_model_dataset(data_dir, preprocessor(recipe, data_dir), global_batch, recipe.data.fold,
                                       validation=True)


def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """token ids -> next-token logits (the language model is a stage, not a served model)."""
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids")])
    def serve(token_ids):
        return {"logits": model(token_ids, training=False)}

    return {"serving_default": serve}


def warmup_inputs(recipe) -> Dict:
    import numpy as np

    return {"serving_default": {"token_ids": np.ones([1, 8], np.int32)}}
