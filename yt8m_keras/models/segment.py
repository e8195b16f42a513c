"""Segment classifiers fine-tuned from a pretrained video-level model (Lee 2019, 7th place
of the 3rd YouTube-8M challenge, https://github.com/ceshine/yt8m-2019).

The 3rd challenge rates 5-second segments. The 7th place pretrained video-level models
(`nextvlad.py`, `dbof.py`) and fine-tuned two kinds of segment classifier, then averaged
them:

- context-agnostic (`build_context_agnostic_segment_model`): the video model itself,
  applied to the segment's frames only (the 5 segment frames widened by 3 frames on each
  side; the data pipeline cuts them);
- context-aware (`build_context_aware_segment_model`): a frozen copy of the pretrained
  encoder reads the whole video as context, a trainable copy reads the segment, and a new
  head classifies their concatenation.

Every segment model takes the same six inputs, so one dataset serves both:
`{"segment_rgb": [B, S, 1024], "segment_audio": [B, S, 128], "segment_mask": [B, S],
"rgb": [B, T, 1024], "audio": [B, T, 128], "mask": [B, T]}`; frames are quantized uint8 (as
the input pipeline gives them), masks float32, 1 for real frames and 0 for padding. The
frames are dequantized by the first layer (`Dequantize`) of the video encoders nested
inside, so a segment model, like a video model, is fed uint8. The output layer is
`predictions`, float32 `[B, num_classes]`.
"""

import copy

import keras
from keras import layers

from yt8m_keras.models.moe import DEFAULT_L2_PENALTY, EMBEDDING_NAME, OUTPUT_NAME, ContextGating, moe_head

# The encoders nest layers from these modules; importing them registers those layers with
# Keras serialization, so `keras.saving.load_model` of a segment model only needs this one.
from yt8m_keras.models import dbof as _dbof  # noqa: F401
from yt8m_keras.models import dequantize as _dequantize  # noqa: F401
from yt8m_keras.models import frame_sampling as _frame_sampling  # noqa: F401
from yt8m_keras.models import nextvlad as _nextvlad  # noqa: F401
from yt8m_keras.models.frame_sampling import FRAME_INPUT_NAMES, frame_inputs

VIDEO_INPUT_NAMES = FRAME_INPUT_NAMES
SEGMENT_INPUT_NAMES = ("segment_rgb", "segment_audio", "segment_mask")

VIDEO_ENCODER_NAME = "video_encoder"
SEGMENT_ENCODER_NAME = "segment_encoder"
# Layers of an encoder copied by `clone_encoder` get this prefix, so their variables'
# paths (`variable.path`) start with it too.
SEGMENT_LAYER_PREFIX = "segment_encoder_"


def segment_model_inputs():
    """The six `keras.Input`s of every segment model, as a dict keyed by input name."""
    return {**frame_inputs("segment_"), **frame_inputs()}


def _check_video_inputs(model):
    names = set(model.input) if isinstance(model.input, dict) else None
    if names != set(VIDEO_INPUT_NAMES):
        raise ValueError(
            f"Model {model.name!r} must take a dict with keys {sorted(VIDEO_INPUT_NAMES)} "
            "(as the builders in nextvlad.py and dbof.py do); got "
            f"{sorted(names) if names else model.input}."
        )


def _frames(inputs, prefix):
    return {name: inputs[prefix + name] for name in VIDEO_INPUT_NAMES}


def video_embedding_model(video_model, name=VIDEO_ENCODER_NAME):
    """The pretrained video model up to its pre-classifier embedding.

    The embedding is the output of the identity layer named `"embedding"` that every
    video builder places right before the MoE head `"predictions"`: for NeXtVLAD the
    hidden layer after batch norm and SE context gating, for DBoF the hidden layer after
    ReLU6, for the context-gated DBoF the hidden layer after the video-level context gate.

    The returned model shares its layers (and weights) with `video_model`.

    Args:
        video_model: a model from `build_nextvlad_video_model`,
            `build_dbof_video_model` or `build_gated_dbof_video_model`.
        name: name of the returned model.

    Returns:
        A functional `keras.Model` mapping `{"rgb", "audio", "mask"}` to
        `[B, embedding_size]`.

    Example:

    ```python
    from yt8m_keras.models.nextvlad import build_nextvlad_video_model
    from yt8m_keras.models.segment import video_embedding_model

    video_model = build_nextvlad_video_model(5, cluster_size=4, groups=2, hidden_size=16)
    encoder = video_embedding_model(video_model)  # outputs (batch, 16)
    ```
    """
    _check_video_inputs(video_model)
    try:
        embedding = video_model.get_layer(EMBEDDING_NAME)
    except ValueError as error:
        raise ValueError(
            f"Model {video_model.name!r} has no layer named {EMBEDDING_NAME!r}; expected a "
            "model from the video builders in nextvlad.py or dbof.py."
        ) from error
    return keras.Model(video_model.input, embedding.output, name=name)


def clone_encoder(encoder, name=SEGMENT_ENCODER_NAME, layer_prefix=SEGMENT_LAYER_PREFIX):
    """A trainable copy of `encoder` with its own variables, initialised to its weights.

    Every layer of the copy is renamed `layer_prefix + name` (inputs keep their names),
    so the copy's variable paths start with `layer_prefix`, and is trainable even if
    `encoder` is frozen.

    Args:
        encoder: a functional model, e.g. from `video_embedding_model`.
        name: name of the copy.
        layer_prefix: prefix added to the copy's layer names.

    Returns:
        A functional `keras.Model` with the same inputs, architecture and weights.

    Example:

    ```python
    from yt8m_keras.models.dbof import build_gated_dbof_video_model
    from yt8m_keras.models.segment import clone_encoder, video_embedding_model

    encoder = video_embedding_model(build_gated_dbof_video_model(5, 16, 8))
    segment_encoder = clone_encoder(encoder)  # same weights, separate variables
    ```
    """

    def renamed_trainable(layer):
        config = layer.get_config()
        config["name"] = layer_prefix + layer.name
        # Created trainable rather than unfrozen afterwards: the source may be frozen, and
        # setting `trainable` on a container does not always reach sublayers built inside
        # custom layers (see FrozenEncoder).
        config["trainable"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(encoder, clone_function=renamed_trainable)
    copy.set_weights(encoder.get_weights())
    return keras.Model(copy.input, copy.output, name=name)


@keras.saving.register_keras_serializable(package="yt8m_keras")
class FrozenEncoder(layers.Layer):
    """Runs `encoder` frozen and always in inference mode.

    A nested model called with `training=False` inside a functional model still gets the
    outer model's `training=True` in `fit` (Keras propagates the call context), and
    freezing alone leaves dropout and random frame sampling active. This wrapper calls
    the encoder with `training=False` itself, so batch-norm statistics stay fixed,
    dropout is off and `FrameSampler` takes evenly spaced frames. It stays frozen even
    if an outer model is set `trainable = True`.

    Args:
        encoder: a built `keras.Model` (its layers are set non-trainable).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.nextvlad import build_nextvlad_video_model
    from yt8m_keras.models.segment import FrozenEncoder, video_embedding_model

    video_model = build_nextvlad_video_model(5, cluster_size=4, groups=2, hidden_size=16)
    frozen = FrozenEncoder(video_embedding_model(video_model), name="video_encoder")
    videos = {
        "rgb": np.zeros((2, 12, 1024), "uint8"),
        "audio": np.zeros((2, 12, 128), "uint8"),
        "mask": np.ones((2, 12), "float32"),
    }
    context = frozen(videos, training=True)  # (2, 16), computed in inference mode
    ```
    """

    def __init__(self, encoder, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.encoder = encoder
        self.encoder.trainable = False
        # Also each variable's own flag: on the TensorFlow backend setting a container's
        # `trainable` to the value it already has does not reach its sublayers, so an
        # encoder deserialised with `trainable: False` would keep trainable variables
        # (which an outer model's `trainable_variables` lists).
        for variable in self.encoder.weights:
            variable.trainable = False
        self.built = True

    @property
    def trainable(self):
        return False

    @trainable.setter
    def trainable(self, value):
        # Frozen by construction; see the class docstring.
        del value

    def call(self, inputs, training=None):
        return self.encoder(inputs, training=False)

    def compute_output_spec(self, inputs, training=None):
        return self.encoder.compute_output_spec(inputs)

    def get_config(self):
        config = super().get_config()
        config.update(encoder=keras.saving.serialize_keras_object(self.encoder))
        return config

    @classmethod
    def from_config(cls, config):
        # Deserialising consumes the nested dicts; leave the caller's config intact.
        config = copy.deepcopy(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        return cls(encoder, **config)


def build_context_agnostic_segment_model(video_model, name="context_agnostic_segment"):
    """A segment classifier that is the video model applied to the segment frames only.

    The whole-video inputs are accepted and ignored, so the same dataset serves this and
    the context-aware model. The video model is nested as a layer and its weights are
    shared, so fine-tuning this model fine-tunes `video_model` in place (pass
    `keras.models.clone_model(video_model)` with copied weights to keep the original).

    Args:
        video_model: a model from the video builders (inputs `rgb`, `audio`, `mask`).
        name: model name.

    Returns:
        A functional `keras.Model` mapping the six segment-model inputs to `predictions`
        `[B, num_classes]` (float32).

    Example:

    ```python
    from yt8m_keras.models.nextvlad import build_nextvlad_video_model
    from yt8m_keras.models.segment import build_context_agnostic_segment_model

    video_model = build_nextvlad_video_model(5, cluster_size=4, groups=2, hidden_size=16)
    segment_model = build_context_agnostic_segment_model(video_model)
    ```
    """
    _check_video_inputs(video_model)
    inputs = segment_model_inputs()
    predictions = video_model(_frames(inputs, "segment_"))
    predictions = layers.Identity(dtype="float32", name=OUTPUT_NAME)(predictions)
    return keras.Model(inputs, predictions, name=name)


def build_context_aware_segment_model(
    video_encoder,
    segment_encoder,
    num_classes,
    hidden_size=2048,
    dropout=0.5,
    gating_reduction=4,
    num_experts=4,
    gating=False,
    per_class_gates=False,
    l2_penalty=DEFAULT_L2_PENALTY,
    batch_norm_momentum=0.99,
    name="context_aware_segment",
):
    """A segment classifier that reads the segment with the whole video as context
    (the 7th place's `ContextualSegmentModel`).

    Graph: `video_encoder` (frozen, always in inference mode, on `rgb`/`audio`/`mask`) and
    `segment_encoder` (trainable, on `segment_rgb`/`segment_audio`/`segment_mask`) ->
    `context_and_segment` (concatenate) -> `head_bn` -> `head_dropout` -> `head_hidden`
    (dense, ReLU; skipped when `hidden_size` is 0) -> `head_context_gating` (SE gate,
    `gating_reduction`; 0 disables it) -> `embedding` -> `predictions`
    (`MixtureOfExperts`, float32). Defaults are the 7th place's
    `segment_with_context.yaml` (`fcn_dim=2048`, `p_drop=0.5`, `se_reduction=4`,
    `n_mixture=4`, one gate shared by all classes).

    Segment-encoder variables (which the trainer gives their own, lower learning rate)
    are those of the nested model named `"segment_encoder"`:
    `segment_encoder_variables(model)`, i.e.
    `model.get_layer("segment_encoder").trainable_variables`. When the segment encoder
    comes from `clone_encoder` (the default), their paths also start with
    `"segment_encoder_"`. The frozen video encoder (layer `"video_encoder"`, a
    `FrozenEncoder`) contributes no trainable variables.

    Args:
        video_encoder: the pretrained embedding model, `video_embedding_model(video_model)`.
            It is frozen in place (its layers are shared with `video_model`).
        segment_encoder: the segment encoder, or None for
            `clone_encoder(video_encoder)` (same architecture, initialised from the
            pretrained weights, own variables). It must not share variables with
            `video_encoder`.
        num_classes: int, number of segment classes.
        hidden_size: int, width of the head's hidden layer; 0 for none.
        dropout: float in [0, 1), dropout on the concatenated embeddings.
        gating_reduction: int, reduction of the head's SE context gate; 0 disables it.
        num_experts: int, experts of the MoE head.
        gating: bool, context gating of the output probabilities in the MoE head.
        per_class_gates: bool, per-class expert gates in the MoE head.
        l2_penalty: float, L2 penalty on the MoE kernels.
        batch_norm_momentum: float, momentum of the head's batch norms.
        name: model name.

    Returns:
        A functional `keras.Model` mapping the six segment-model inputs to `predictions`
        `[B, num_classes]` (float32).

    Example:

    ```python
    from yt8m_keras.models.nextvlad import build_nextvlad_video_model
    from yt8m_keras.models.segment import (
        build_context_aware_segment_model, segment_encoder_variables, video_embedding_model)

    video_model = build_nextvlad_video_model(5, cluster_size=4, groups=2, hidden_size=16)
    # ... pretrain video_model ...
    model = build_context_aware_segment_model(
        video_embedding_model(video_model), None, num_classes=5, hidden_size=32)
    slow_variables = segment_encoder_variables(model)  # lower learning rate
    ```
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    _check_video_inputs(video_encoder)
    if segment_encoder is None:
        segment_encoder = clone_encoder(video_encoder)
    _check_video_inputs(segment_encoder)
    video_variables = {id(v) for v in video_encoder.weights}
    if any(id(v) in video_variables for v in segment_encoder.weights):
        raise ValueError(
            "segment_encoder shares variables with video_encoder; pass "
            "clone_encoder(video_encoder) (or None) for a separate, trainable copy."
        )
    if segment_encoder.name != SEGMENT_ENCODER_NAME:
        # A new functional model over the same layers: same weights, the expected name.
        segment_encoder = keras.Model(
            segment_encoder.input, segment_encoder.output, name=SEGMENT_ENCODER_NAME
        )
    segment_encoder.trainable = True

    inputs = segment_model_inputs()
    context = FrozenEncoder(video_encoder, name=VIDEO_ENCODER_NAME)(_frames(inputs, ""))
    segment = segment_encoder(_frames(inputs, "segment_"))
    x = layers.Concatenate(name="context_and_segment")([context, segment])
    x = layers.BatchNormalization(momentum=batch_norm_momentum, name="head_bn")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    if hidden_size:
        x = layers.Dense(
            hidden_size, activation="relu", kernel_initializer="he_normal", name="head_hidden"
        )(x)
    if gating_reduction:
        x = ContextGating(
            reduction=gating_reduction,
            batch_norm=True,
            batch_norm_momentum=batch_norm_momentum,
            name="head_context_gating",
        )(x)
    predictions = moe_head(x, num_classes, num_experts, gating, per_class_gates, l2_penalty,
                           batch_norm_momentum)
    return keras.Model(inputs, predictions, name=name)


def segment_encoder_variables(model):
    """The trainable variables of a context-aware model's segment encoder.

    Args:
        model: a model from `build_context_aware_segment_model`.

    Returns:
        A list of variables: those of the nested `"segment_encoder"` model.

    Example:

    ```python
    from yt8m_keras.models.dbof import build_gated_dbof_video_model
    from yt8m_keras.models.segment import (
        build_context_aware_segment_model, segment_encoder_variables, video_embedding_model)

    video_model = build_gated_dbof_video_model(5, cluster_size=16, hidden_size=8)
    model = build_context_aware_segment_model(
        video_embedding_model(video_model), None, num_classes=5, hidden_size=8)
    slow = {id(v) for v in segment_encoder_variables(model)}
    fast = [v for v in model.trainable_variables if id(v) not in slow]  # the new head
    ```
    """
    return list(model.get_layer(SEGMENT_ENCODER_NAME).trainable_variables)
