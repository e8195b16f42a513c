"""The taxonomy task: T5 reads `description | retailer | price`, writes `supergroup > group > module | brand`.

What the one trainer and the one exporter need. The classes are the taxonomy's valid paths
(`taxonomy.csv`); the tokenizer (`vocabulary.spm`) is an asset the trainer copies into the
run. The best checkpoint is the epoch with the best validation item accuracy: the share of
lines whose whole target is right under teacher forcing, which is exactly the item accuracy
of greedy unconstrained decoding (greedy reproduces a target iff every step's argmax is
the target's token), at the cost of one forward pass.
"""

import os
from typing import Dict, List

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import product_text as kind
from tfrecords.manifest import read_manifest as read_checked_manifest
from yt8m_keras.competitions.taxonomy import input as data
from yt8m_keras.competitions.taxonomy.hierarchy import TAXONOMY, read_taxonomy, taxonomy_of_rows
from yt8m_keras.models import build_registered
from yt8m_keras.models.t5 import DECODER_LENGTH, ENCODER_LENGTH, read_vocabulary

MONITOR = "val_item_accuracy"
MONITOR_MODE = "max"
VOCABULARY = "vocabulary.spm"
ASSETS = (VOCABULARY,)


class ItemAccuracy(keras.metrics.MeanMetricWrapper):
    """The share of sequences whose every target token (up to the padding) is the argmax.

    Args:
        pad_id: the padding id of the targets.
        name: the metric's name (its logs key).

    Example:
        >>> metric = ItemAccuracy()
        >>> metric.update_state([[3, 1, 0]], [[[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 0, 0]]])
        >>> float(metric.result())  # 1.0
    """

    def __init__(self, pad_id: int = data.PAD, name: str = "item_accuracy", **kwargs):
        def item_correct(y_true, y_pred):
            y_true = keras.ops.cast(y_true, "int32")
            hit = keras.ops.equal(keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32"), y_true)
            return keras.ops.cast(keras.ops.all(hit | keras.ops.equal(y_true, pad_id), axis=-1), "float32")

        super().__init__(item_correct, name=name, **kwargs)
        self.pad_id = pad_id

    def get_config(self):
        return {"pad_id": self.pad_id, "name": self.name}


def read_manifest(data_dir: str) -> Dict:
    return read_checked_manifest(data_dir, kind=kind.KIND)


def read_classes(data_dir: str) -> List[Dict]:
    """The taxonomy's paths as class rows: class_index, category_id, the four fields, count."""
    taxonomy = read_taxonomy(os.path.join(data_dir, TAXONOMY))
    return [{"class_index": i, "category_id": i, **dict(zip(kind.LABELS, path)), "count": count}
            for i, (path, count) in enumerate(zip(taxonomy.paths, taxonomy.counts))]


def sequence_lengths(recipe):
    args = recipe.model.args
    return int(args.get("encoder_length", ENCODER_LENGTH)), int(args.get("decoder_length", DECODER_LENGTH))


def build_model(recipe, num_classes: int, assets_dir: str) -> keras.Model:
    return build_registered(recipe, reserved=("vocabulary", "seed"),
                            vocabulary=read_vocabulary(os.path.join(assets_dir, VOCABULARY)),
                            seed=recipe.training.seed)


def set_stage(model: keras.Model, stage: str) -> None:
    if stage != "full":
        raise UserError(f"recipe key training.stages: the taxonomy T5 trains one stage, 'full'; got {stage!r}")


def compile_args() -> Dict:
    return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "weighted_metrics": [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")],
            "metrics": [ItemAccuracy()]}


def _tokenizer(recipe, data_dir: str):
    import keras_hub

    return keras_hub.models.T5Tokenizer(proto=read_vocabulary(os.path.join(data_dir, VOCABULARY)))


def train_dataset(recipe, data_dir: str, global_batch: int, skip_batches: int = 0) -> tf.data.Dataset:
    encoder_length, decoder_length = sequence_lengths(recipe)
    return data.train_dataset(data_dir, recipe.data.train_split, _tokenizer(recipe, data_dir), global_batch,
                              encoder_length, decoder_length, seed=recipe.training.seed,
                              shuffle_buffer=recipe.data.shuffle_buffer, skip_batches=skip_batches)


def val_dataset(recipe, data_dir: str, global_batch: int) -> tf.data.Dataset:
    encoder_length, decoder_length = sequence_lengths(recipe)
    return data.eval_dataset(data_dir, recipe.data.val_split, _tokenizer(recipe, data_dir), global_batch,
                             encoder_length, decoder_length)


# --- serving -------------------------------------------------------------------------------

def serving_signatures(model: keras.Model, recipe, classes: List[Dict]) -> Dict:
    """`serving_default`: raw strings -> a valid path by constrained beam search, with its probability.

    `unconstrained`: the same inputs -> the model's free text (for the winners' snapping,
    or to see what constraining changed). Tokenization and decoding are in the graph
    (TensorFlow Text's SentencePiece op: `import tensorflow_text` before loading).
    """
    from yt8m_keras.competitions.taxonomy.decoding import (TaxonomyDecoder, generation_step, make_sampler,
                                                            sequence_log_likelihood)

    encoder_length, decoder_length = sequence_lengths(recipe)
    chunk, beams = recipe.export.batch_size, recipe.export.beams
    decoder = TaxonomyDecoder(model, taxonomy_of_rows(classes), encoder_length, decoder_length, chunk)
    paths = np.zeros((len(decoder.paths), decoder_length - 1), np.int32)
    for i, tokens in enumerate(decoder.paths):
        paths[i, :len(tokens)] = tokens
    path_ids = tf.constant(paths)
    names = {level: tf.constant([p[i] for p in decoder.taxonomy.paths]) for i, level in enumerate(kind.LABELS)}
    constrained, free = make_sampler(True, beams, decoder.trie), make_sampler(False, beams)
    spec = [tf.TensorSpec([None], tf.string, name=name) for name in (kind.DESCRIPTION, kind.RETAILER, kind.PRICE)]

    def in_chunks(description, retailer, price, generate):
        """Runs `generate` on fixed-size chunks (padded): generation needs a static batch."""
        inputs = data.encoder_inputs(model.tokenizer, description, retailer, tf.strings.to_number(price), encoder_length)
        rows = tf.shape(description)[0]
        padded = (rows + chunk - 1) // chunk * chunk
        inputs = {k: tf.reshape(tf.pad(v, [[0, padded - rows], [0, 0]]), [-1, chunk, encoder_length])
                  for k, v in inputs.items()}
        out = tf.map_fn(generate, inputs, fn_output_signature=tf.TensorSpec([chunk, decoder_length - 1], tf.int32))
        flat = {k: tf.reshape(v, [-1, encoder_length])[:rows] for k, v in inputs.items()}
        return flat, tf.reshape(out, [-1, decoder_length - 1])[:rows]

    def run(sampler):
        def generate(inputs):
            model.sampler = sampler
            return tf.cast(generation_step(model, inputs, decoder_length), tf.int32)
        return generate

    @tf.function(input_signature=spec)
    def serve(description, retailer, price):
        inputs, ids = in_chunks(description, retailer, price, run(constrained))
        # Constrained outputs are paths: find which by comparing with every path's tokens.
        index = tf.argmax(tf.cast(tf.reduce_all(ids[:, None, :] == path_ids[None], axis=-1), tf.int32), axis=1)
        score = tf.exp(sequence_log_likelihood(model, inputs, ids))
        return {**{level: tf.gather(names[level], index) for level in kind.LABELS}, "score": score}

    @tf.function(input_signature=spec)
    def serve_unconstrained(description, retailer, price):
        inputs, ids = in_chunks(description, retailer, price, run(free))
        ended = tf.cumsum(tf.cast(ids == data.END, tf.int32), axis=1, exclusive=True) > 0
        tokens = tf.ragged.boolean_mask(ids, ~ended & (ids != data.END) & (ids != data.PAD))
        return {"text": tf.strings.strip(model.tokenizer.detokenize(tokens)),
                "score": tf.exp(sequence_log_likelihood(model, inputs, ids))}

    return {"serving_default": serve, "unconstrained": serve_unconstrained}


def warmup_inputs(recipe) -> Dict[str, Dict[str, np.ndarray]]:
    """One small request per signature, replayed by TF Serving at load time."""
    request = {kind.DESCRIPTION: np.array([b"warmup 500ml"], dtype=object),
               kind.RETAILER: np.array([b"retailer_1"], dtype=object), kind.PRICE: np.array([b"1.00"], dtype=object)}
    return {"serving_default": request, "unconstrained": request}
