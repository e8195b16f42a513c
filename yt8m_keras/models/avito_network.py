"""The Avito demand network: text + image features + categorical embeddings + numbers -> deal_probability.

The 54th-place seed's architecture: categorical embeddings with its sizes, normalised
numbers, a text encoder pretrained as a language model (`lstm_language_model.py`),
CNN features of the picture; each modality squeezed by a dense "downsampler" (Dense ->
LayerNorm -> ReLU) to `units`, the four concatenated and squeezed again into the
network's `units`-d features (the layer named "features", which LightGBM reads), and a
sigmoid output trained on RMSE.

A missing picture zeroes the image branch's output (times `image_mask`), so it changes
nothing but that branch.
"""

from typing import Dict

import keras

from yt8m_keras.models.lstm_language_model import TextEncoderLayers, build_lstm_language_model, transfer_text_encoder

# The seed's embedding sizes, with Kaggle's vocabulary sizes (about) they were chosen for.
SEED_EMBEDDINGS = {"region": (3, 28), "city": (5, 1752), "parent_category_name": (3, 9), "category_name": (5, 47),
                   "image_top_1": (5, 3064), "user_type": (2, 3), "weekday": (3, 7), "param_1": (5, 372),
                   "param_2": (3, 278), "param_3": (3, 1277)}
FEATURES = "features"


def categorical_embedding_dim(column: str, vocabulary_size: int) -> int:
    """The seed's size for the column; a larger vocabulary than Kaggle's grows it by its fourth root."""
    size, seed_vocabulary = SEED_EMBEDDINGS.get(column, (3, 10))
    return max(size, round(size * (vocabulary_size / seed_vocabulary) ** 0.25))


def downsampler(units: int, name: str):
    dense = keras.layers.Dense(units, name=f"{name}_dense")
    norm = keras.layers.LayerNormalization(name=f"{name}_norm")
    return lambda x: keras.layers.ReLU(name=name)(norm(dense(x)))


def build_avito_network(vocabulary_sizes: Dict[str, int], text_vocabulary_size: int, numeric_dim: int,
                        image_dim: int = 0, text_length: int = 100, embedding_dim: int = 400, hidden_dim: int = 1150,
                        num_layers: int = 3, units: int = 128, dropout: float = 0.1,
                        language_model: str = "") -> keras.Model:
    """Inputs (a dict) -> deal_probability [batch, 1].

    Inputs: one int code per categorical column (0: unknown or empty; named after the
    column), `numbers` [batch, numeric_dim], `text` token ids [batch, text_length] (0:
    padding), and with `image_dim` > 0 `image_features` [batch, image_dim] and `image_mask`
    [batch, 1].

    Args:
        vocabulary_sizes: column -> codes (including 0).
        text_vocabulary_size: subword tokens.
        numeric_dim: normalised numbers (with their missing flags).
        image_dim: width of the CNN features (0: no image branch).
        text_length: tokens of title + description.
        embedding_dim, hidden_dim, num_layers: the text encoder (the language model's).
        units: width of the downsamplers and of the features.
        dropout: before the features.
        language_model: a weights file of `build_lstm_language_model` with the same text
            encoder dimensions, whose encoder starts the network's.

    Example:
        >>> model = build_avito_network({"region": 29, "city": 100}, 8000, numeric_dim=4, image_dim=2048,
        ...                             embedding_dim=32, hidden_dim=64, num_layers=2)
    """
    inputs, branches = {}, []
    embeddings = []
    for column, size in sorted(vocabulary_sizes.items()):
        inputs[column] = keras.Input((), dtype="int32", name=column)
        embedding = keras.layers.Embedding(size, categorical_embedding_dim(column, size), name=f"{column}_embedding")
        embeddings.append(embedding(inputs[column]))
    branches.append(downsampler(units, "categorical_downsampler")(keras.layers.Concatenate()(embeddings)))

    inputs["numbers"] = keras.Input((numeric_dim,), name="numbers")
    branches.append(downsampler(units, "numeric_downsampler")(inputs["numbers"]))

    inputs["text"] = keras.Input((text_length,), dtype="int32", name="text")
    mask = keras.ops.not_equal(inputs["text"], 0)
    states = TextEncoderLayers(text_vocabulary_size, embedding_dim, hidden_dim, num_layers, dropout)(
        inputs["text"], mask=mask)
    weights = keras.ops.cast(mask, states.dtype)[..., None]
    mean = keras.ops.sum(states * weights, axis=1) / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)
    peak = keras.ops.max(states + (weights - 1.0) * 1e4, axis=1)  # padding never wins the max
    branches.append(downsampler(units, "text_downsampler")(keras.layers.Concatenate()([mean, peak])))

    if image_dim:
        inputs["image_features"] = keras.Input((image_dim,), name="image_features")
        inputs["image_mask"] = keras.Input((1,), name="image_mask")
        image = downsampler(units, "image_downsampler")(inputs["image_features"])
        branches.append(keras.layers.Multiply(name="image_branch")([image, inputs["image_mask"]]))

    x = keras.layers.Dropout(dropout)(keras.layers.Concatenate()(branches))
    features = downsampler(units, FEATURES)(x)
    output = keras.layers.Dense(1, activation="sigmoid", name="deal_probability")(features)
    model = keras.Model(inputs, output, name="avito_network")
    if language_model:
        lm = build_lstm_language_model(text_vocabulary_size, embedding_dim, hidden_dim, num_layers, dropout)
        lm.load_weights(language_model)
        transfer_text_encoder(lm, model)
    return model


def features_model(model: keras.Model) -> keras.Model:
    """The same inputs -> the network's `units`-d features (what LightGBM reads)."""
    return keras.Model(model.inputs, model.get_layer(FEATURES).output)

