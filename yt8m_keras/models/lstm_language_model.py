"""An LSTM language model with tied input/output embeddings (ULMFiT's pretraining step).

The Avito seed pretrained a language model on the ads' own text and started its network's
text encoder from it. Here the encoder (`TextEncoderLayers`: token embedding + stacked
LSTMs) is one set of named layers that both the language model and the network build, so
the pretrained weights move over by layer name (`transfer_text_encoder`).

Tying the output projection to the input embedding (Press & Wolf, 2017; AWD-LSTM) needs the
last LSTM's width to equal the embedding's: the stack narrows to `embedding_dim` at its top.
"""

from typing import List

import keras

TOKEN_EMBEDDING = "token_embedding"


def lstm_name(index: int) -> str:
    return f"lstm_{index}"


class TextEncoderLayers:
    """The layers of the text encoder, built once and applied where a model needs them.

    Args:
        vocabulary_size: tokens of the subword vocabulary (0 is padding).
        embedding_dim: width of the token embedding and of the top LSTM.
        hidden_dim: width of the other LSTMs.
        num_layers: stacked LSTMs.
        dropout: between layers.

    Example:
        >>> encoder = TextEncoderLayers(8000, 400, 1150, 3)
        >>> states = encoder(keras.Input((None,), dtype="int32"))  # [batch, length, 400]
    """

    def __init__(self, vocabulary_size: int, embedding_dim: int, hidden_dim: int, num_layers: int,
                 dropout: float = 0.1):
        self.embedding = keras.layers.ReversibleEmbedding(vocabulary_size, embedding_dim, tie_weights=True,
                                                          name=TOKEN_EMBEDDING)
        widths = [hidden_dim] * (num_layers - 1) + [embedding_dim]
        self.lstms: List[keras.layers.LSTM] = [keras.layers.LSTM(width, return_sequences=True, name=lstm_name(i))
                                               for i, width in enumerate(widths)]
        self.dropouts = [keras.layers.Dropout(dropout) for _ in range(num_layers + 1)]

    def __call__(self, token_ids, mask=None):
        x = self.dropouts[0](self.embedding(token_ids))
        for lstm, dropout in zip(self.lstms, self.dropouts[1:]):
            x = dropout(lstm(x, mask=mask))
        return x


def build_lstm_language_model(vocabulary_size: int, embedding_dim: int = 400, hidden_dim: int = 1150,
                              num_layers: int = 3, dropout: float = 0.1) -> keras.Model:
    """Token ids [batch, length] -> next-token logits [batch, length, vocabulary_size].

    Args:
        vocabulary_size: tokens of the subword vocabulary (0 is padding).
        embedding_dim, hidden_dim, num_layers: AWD-LSTM's 400, 1150 and 3 by default.
        dropout: between layers.

    Example:
        >>> lm = build_lstm_language_model(8000, 32, 64, 2)
        >>> lm(np.zeros((2, 10), "int32")).shape  # (2, 10, 8000)
    """
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    encoder = TextEncoderLayers(vocabulary_size, embedding_dim, hidden_dim, num_layers, dropout)
    states = encoder(token_ids)
    logits = encoder.embedding(states, reverse=True)
    return keras.Model(token_ids, logits, name="lstm_language_model")


def transfer_text_encoder(source: keras.Model, target: keras.Model) -> int:
    """Copies the text encoder's weights (by layer name) from a language model; returns layers copied."""
    names = [TOKEN_EMBEDDING] + [layer.name for layer in source.layers if layer.name.startswith("lstm_")]
    for name in names:
        source_weights = source.get_layer(name).get_weights()
        target_layer = target.get_layer(name)
        if [w.shape for w in target_layer.get_weights()] != [w.shape for w in source_weights]:
            raise ValueError(f"layer {name}: the language model's shapes differ from the network's")
        target_layer.set_weights(source_weights)
    return len(names)
