"""T5 (KerasHub) for text-to-text tasks, from scratch or from a local KerasHub preset.

KerasHub provides the backbone, the seq2seq head, cached decoding and the SentencePiece
tokenizer; this file picks the configurations we train and fixes one trap of training
from scratch:

KerasHub 0.32's `T5Backbone` initialises the (tied) token embedding with
`TruncatedNormal(mean=1.0)`, so every token starts close to the same vector, the tied
output layer scores every token alike and training stalls (token accuracy stuck near the
frequency of the commonest token). Mesh TensorFlow's T5 draws embeddings from N(0, 1);
`build_t5` re-draws them so when it does not load pretrained weights.
"""

import os
import warnings
from typing import Optional

import keras

from tfrecords import UserError

# flan-t5 small/base dimensions (gated GELU, untied output layer); `tiny` is for tests
# and the quickstart (tied, as the original T5 1.0 was).
CONFIGURATIONS = {
    "tiny": dict(num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128, key_value_dim=16,
                 activation="gelu", use_gated_activation=True, tie_embedding_weights=True),
    "small": dict(num_layers=8, num_heads=6, hidden_dim=512, intermediate_dim=1024, key_value_dim=64,
                  activation="gelu", use_gated_activation=True, tie_embedding_weights=False),
    "base": dict(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=2048, key_value_dim=64,
                 activation="gelu", use_gated_activation=True, tie_embedding_weights=False),
}
# Token lengths: the encoder's input and the decoder's (start token + target + end token).
ENCODER_LENGTH, DECODER_LENGTH = 64, 32
PRESET_VOCABULARY = os.path.join("assets", "tokenizer", "vocabulary.spm")


def read_vocabulary(path: str) -> bytes:
    """The SentencePiece proto at `path`, or in a KerasHub preset directory."""
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        path = os.path.join(path, PRESET_VOCABULARY)
    if not tf.io.gfile.exists(path):
        raise UserError(f"tokenizer not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def reinitialize_token_embedding(backbone, seed: int = 0) -> None:
    """Draws the token embedding from N(0, 1) (see the module docstring for why)."""
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(keras.initializers.RandomNormal(0.0, 1.0, seed=seed)(embeddings.shape, embeddings.dtype))


def build_t5(vocabulary: bytes, configuration: str = "tiny", preset: Optional[str] = None, dropout: float = 0.1,
             encoder_length: int = ENCODER_LENGTH, decoder_length: int = DECODER_LENGTH, seed: int = 0):
    """A `keras_hub.models.T5Seq2SeqLM` without a preprocessor, its tokenizer attached as `.tokenizer`.

    The model takes token ids (`encoder_token_ids`, `encoder_padding_mask`,
    `decoder_token_ids`, `decoder_padding_mask`) and returns next-token logits; the
    tokenizer rides along as a tracked attribute, so an exported graph that tokenizes
    raw strings carries it.

    Args:
        vocabulary: a SentencePiece proto with T5's special tokens (pad 0, `</s>` 1).
        configuration: "tiny", "small" (flan-t5-small's dimensions) or "base".
        preset: a local KerasHub preset directory (e.g. one saved from `flan_small_multi`)
            whose weights and configuration to load; its vocabulary must be `vocabulary`.
        dropout: the backbone's dropout rate.
        encoder_length, decoder_length: token lengths of inputs and outputs (kept on the
            model as attributes: decoding and serving read them there).
        seed: for the token embedding's re-initialisation.

    Example:
        >>> model = build_t5(read_vocabulary("DATA/vocabulary.spm"), "tiny")
        >>> model.tokenizer("milk 1L").numpy()
    """
    import keras_hub

    # KerasHub's T5 layers warn on every call that they drop Keras masks: T5 takes its
    # padding masks as explicit inputs, so nothing is lost, and the warning buries the logs.
    warnings.filterwarnings("ignore", message=".*T5MultiHeadAttention.*does not support masking")
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    if tokenizer.token_to_id("<pad>") != 0 or tokenizer.token_to_id("</s>") != 1:
        raise UserError("the tokenizer must have T5's special tokens: <pad> id 0, </s> id 1")
    if preset:
        if read_vocabulary(preset) != vocabulary:
            raise UserError(f"preset {preset} has another vocabulary than the data's: convert with "
                            f"--tokenizer {preset}")
        backbone = keras_hub.models.T5Backbone.from_preset(preset, dropout=dropout)
    else:
        if configuration not in CONFIGURATIONS:
            raise UserError(f"unknown T5 configuration {configuration!r} (known: {', '.join(CONFIGURATIONS)})")
        backbone = keras_hub.models.T5Backbone(vocabulary_size=tokenizer.vocabulary_size(), dropout=dropout,
                                               **CONFIGURATIONS[configuration])
        reinitialize_token_embedding(backbone, seed)
    if encoder_length < 2 or decoder_length < 3:
        raise UserError("encoder_length must be at least 2 and decoder_length at least 3")
    model = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
    model.tokenizer = tokenizer
    model.encoder_length, model.decoder_length = int(encoder_length), int(decoder_length)
    return model
