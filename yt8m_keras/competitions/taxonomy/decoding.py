"""Generating taxonomy paths with a trained T5: unconstrained, snapped and constrained.

- unconstrained: KerasHub's greedy or beam sampler; the text is parsed into four fields
  (it may name labels that do not exist, or break the hierarchy);
- snapped: the unconstrained output repaired field by field (`Taxonomy.snap`);
- constrained: `TrieSampler` over the token sequences of the taxonomy's paths, so the
  output is a valid path by construction (greedy or beam search over valid paths).

Generation runs on fixed-size batches: KerasHub's `generate_step` does not trace with an
unknown batch size (its cache slicing needs a static one), so a short batch is padded
and the padding rows dropped.

Example:
    >>> decoder = TaxonomyDecoder(model, taxonomy, encoder_length=64, decoder_length=32)
    >>> decoder.predict(rows, "constrained", beams=4)[0]
    ('Food', 'Dairy', 'Yogurt', 'Danone')
"""

from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import product_text as kind
from yt8m_keras.competitions.taxonomy.hierarchy import Taxonomy
from yt8m_keras.competitions.taxonomy.input import END, PAD, encoder_inputs
from yt8m_keras.models.trie_sampler import Trie, TrieSampler

DECODINGS = ("unconstrained", "snapped", "constrained")


def path_token_ids(tokenizer, taxonomy: Taxonomy) -> List[List[int]]:
    """Each path's target tokens, with the end token: what the model is trained to emit."""
    texts = tf.constant([kind.target_text(p) for p in taxonomy.paths])
    tokens = tokenizer(texts)  # eagerly, KerasHub returns lists for ragged outputs
    rows = tokens.to_list() if hasattr(tokens, "to_list") else tokens
    return [[int(t) for t in row] + [END] for row in rows]


def make_sampler(constrained: bool, beams: int, trie: Optional[Trie] = None):
    import keras_hub

    if constrained:
        return TrieSampler(trie, num_beams=beams, pad_id=PAD)
    return keras_hub.samplers.GreedySampler() if beams == 1 else keras_hub.samplers.BeamSampler(num_beams=beams)


class TaxonomyDecoder:
    """A trained T5Seq2SeqLM with its taxonomy: batches of lines in, paths out.

    Args:
        model: from `yt8m_keras.models.t5.build_t5` (with `.tokenizer`).
        taxonomy: the valid paths.
        encoder_length, decoder_length: the sequence lengths the model was trained with.
        batch_size: generation's fixed batch.
        compiled: generation as an XLA-compiled tf.function (KerasHub's own default under
            TensorFlow; 4-20x faster on CPU than a plain tf.function), or eager.
    """

    def __init__(self, model, taxonomy: Taxonomy, encoder_length: int, decoder_length: int, batch_size: int = 64,
                 compiled: bool = True):
        self.model, self.taxonomy = model, taxonomy
        self.tokenizer = model.tokenizer
        self.encoder_length, self.decoder_length, self.batch_size = encoder_length, decoder_length, batch_size
        self.paths = path_token_ids(self.tokenizer, taxonomy)
        longest = max(len(p) for p in self.paths)
        if longest > decoder_length - 1:  # the decoder's first position is the start token
            raise UserError(f"the longest taxonomy path is {longest} tokens with the end token; "
                            f"decoder_length {decoder_length} leaves room for {decoder_length - 1}")
        self.trie = Trie(self.paths, end_id=END)
        self.compiled = compiled
        self._functions: Dict = {}

    def encode(self, rows: Sequence[Dict]) -> Dict[str, tf.Tensor]:
        return encoder_inputs(self.tokenizer, tf.constant([r[kind.DESCRIPTION] for r in rows]),
                              tf.constant([r[kind.RETAILER] for r in rows]),
                              tf.constant([r[kind.PRICE] for r in rows], tf.float32), self.encoder_length)

    def _generate_function(self, constrained: bool, beams: int):
        key = (constrained, beams)
        if key not in self._functions:
            sampler = make_sampler(constrained, beams, self.trie)

            def generate(inputs):
                self.model.sampler = sampler
                return generation_step(self.model, inputs, self.decoder_length)

            self._functions[key] = tf.function(generate, jit_compile=True) if self.compiled else generate
        return self._functions[key]

    def generate(self, encoded: Dict[str, tf.Tensor], constrained: bool, beams: int = 1) -> np.ndarray:
        """Output token ids [rows, decoder_length - 1] (after the start token), in fixed-size batches."""
        generate = self._generate_function(constrained, beams)
        rows = int(encoded["encoder_token_ids"].shape[0])
        outputs = []
        for start in range(0, rows, self.batch_size):
            chunk = {k: v[start:start + self.batch_size] for k, v in encoded.items()}
            n = int(chunk["encoder_token_ids"].shape[0])
            chunk = {k: tf.pad(v, [[0, self.batch_size - n], [0, 0]]) for k, v in chunk.items()}
            outputs.append(np.asarray(generate(chunk))[:n])
        return np.concatenate(outputs) if outputs else np.zeros((0, self.decoder_length - 1), np.int32)

    def texts(self, ids: np.ndarray) -> List[str]:
        cut = [[int(t) for t in row[:list(row).index(END)]] if END in row else [int(t) for t in row if t != PAD]
               for row in ids]
        if not cut:
            return []
        texts = self.tokenizer.detokenize(tf.ragged.constant(cut, dtype=tf.int32, ragged_rank=1))
        texts = texts.numpy() if hasattr(texts, "numpy") else texts
        # Stripped: SentencePiece keeps a lone leading "▁" piece as a space in one code path and
        # not in another; no label starts or ends with a space.
        return [(t.decode("utf-8") if isinstance(t, bytes) else str(t)).strip() for t in texts]

    def labels(self, ids: np.ndarray, decoding: str) -> List[Optional[tuple]]:
        """Four fields per row (None: an unconstrained output that is not 'a > b > c | d')."""
        if decoding == "constrained":
            return [self.taxonomy.paths[self.trie.sequence_index(row)] for row in ids]
        parsed = [kind.labels_of(text) for text in self.texts(ids)]
        return [self.taxonomy.snap(p) for p in parsed] if decoding == "snapped" else parsed

    def predict(self, rows: Sequence[Dict], decoding: str = "constrained", beams: int = 1) -> List[Optional[tuple]]:
        ids = self.generate(self.encode(rows), constrained=decoding == "constrained", beams=beams)
        return self.labels(ids, decoding)


def generation_step(model, inputs: Dict[str, tf.Tensor], decoder_length: int) -> tf.Tensor:
    """`model.generate_step` from one start token; returns the generated ids after it."""
    batch = keras.ops.shape(inputs["encoder_token_ids"])[0]
    prompt = keras.ops.zeros((batch, decoder_length), "int32")
    prompt_mask = keras.ops.concatenate([keras.ops.ones((batch, 1), "int32"),
                                         keras.ops.zeros((batch, decoder_length - 1), "int32")], axis=1)
    out = model.generate_step({**inputs, "decoder_token_ids": prompt, "decoder_padding_mask": prompt_mask},
                              stop_token_ids=(END,))
    ids = out["decoder_token_ids"][:, 1:]
    # After the end token, KerasHub's samplers keep writing (the loop runs until every row
    # ended): blank everything past each row's first end token.
    after_end = keras.ops.cumsum(keras.ops.cast(keras.ops.equal(ids, END), "int32"), axis=1) \
        - keras.ops.cast(keras.ops.equal(ids, END), "int32")
    return keras.ops.where(after_end > 0, PAD, ids)


def sequence_log_likelihood(model, inputs: Dict[str, tf.Tensor], ids: tf.Tensor) -> tf.Tensor:
    """log P(ids | inputs) under the model (teacher forcing), summed up to and with the end token."""
    batch = keras.ops.shape(ids)[0]
    start = keras.ops.zeros((batch, 1), ids.dtype)
    ended = keras.ops.cumsum(keras.ops.cast(keras.ops.equal(ids, END), "int32"), axis=1)
    mask = keras.ops.concatenate([keras.ops.ones((batch, 1), "int32"), keras.ops.cast(ended[:, :-1] == 0, "int32")],
                                 axis=1)
    logits = model({**inputs, "decoder_token_ids": keras.ops.concatenate([start, ids[:, :-1]], axis=1),
                    "decoder_padding_mask": mask}, training=False)
    log_probs = keras.ops.log_softmax(keras.ops.cast(logits, "float32"), axis=-1)
    picked = keras.ops.take_along_axis(log_probs, keras.ops.cast(ids, "int32")[..., None], axis=-1)[..., 0]
    return keras.ops.sum(picked * keras.ops.cast(mask, "float32"), axis=1)
