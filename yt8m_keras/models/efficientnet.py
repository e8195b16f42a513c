"""EfficientNet image classifier with an optional metadata branch: the SIIM-ISIC 2020 winners' model.

The 1st place (CV AUC 0.9600) trained EfficientNet B3-B7 on 9 diagnosis classes with a
small dense branch over patient metadata, and a head of five dropout samples over one
shared dense layer ("multi-sample dropout"). The backbone is `keras.applications`'
EfficientNet (ImageNet weights optional), with global average pooling; a `tiny` variant
keeps the real EfficientNet topology at a fraction of the width and depth for tests.
"""

import re

import keras
from keras import layers

from yt8m_keras.models.pretrained import build_application

OUTPUT_NAME = "probabilities"
IMAGE_INPUT = "image"
METADATA_INPUT = "metadata"
BACKBONE_NAME = "backbone"
APPLICATIONS = {
    "b0": keras.applications.EfficientNetB0,
    "b1": keras.applications.EfficientNetB1,
    "b2": keras.applications.EfficientNetB2,
    "b3": keras.applications.EfficientNetB3,
    "b4": keras.applications.EfficientNetB4,
    "b5": keras.applications.EfficientNetB5,
    "b6": keras.applications.EfficientNetB6,
    "b7": keras.applications.EfficientNetB7,
}
VARIANTS = tuple(APPLICATIONS) + ("tiny",)
# keras.applications builds every block's drop-connect as a Dropout named "...drop" whose
# rate grows linearly with depth up to this default; rates are rescaled from it.
_KERAS_DROP_CONNECT_RATE = 0.2
_DROP_CONNECT = re.compile(r"^block\w+drop$")
# Tiny: EfficientNet's own block structure with width 0.1 and depth 0.5 (1-2 repeats per
# stage, so drop-connect is there; 8-16 channels): 64 px images train in seconds on a CPU.
_TINY_WIDTH, _TINY_DEPTH = 0.1, 0.5


def build_efficientnet(
    num_classes,
    image_size=384,
    variant="b3",
    weights=None,
    metadata_dim=0,
    metadata_units=(512, 128),
    metadata_dropout=0.3,
    dropout=0.5,
    dropout_samples=5,
    drop_connect_rate=0.2,
    batch_norm_momentum=0.99,
    augmentation=None,
    name=None,
):
    """Builds the classifier: uint8 images (and a metadata vector) in, class probabilities out.

    The model takes raw pixels (uint8 or float in [0, 255]): keras.applications'
    EfficientNet normalises them itself, so serving feeds decoded JPEGs directly. An
    `augmentation` layer, if given, runs first, in training only, on the accelerator.

    Args:
        num_classes: softmax width (the winners' 9 diagnosis classes).
        image_size: input side in pixels.
        variant: "b0" ... "b7" (keras.applications) or "tiny" (tests).
        weights: None, "imagenet" (a download) or a weights file path; "tiny" takes None only.
        metadata_dim: length of the metadata vector input; 0 builds the image-only variant.
        metadata_units: the metadata branch's dense widths (Dense -> BatchNorm -> swish,
            with dropout after the first), as the winners' 512 -> 128.
        metadata_dropout: dropout after the branch's first layer.
        dropout: rate of each of the head's dropout samples.
        dropout_samples: dropout copies over one shared dense layer, logits averaged.
        drop_connect_rate: the backbone's stochastic depth at its last block
            (keras.applications fixes 0.2 and does not expose it: set after building).
        batch_norm_momentum: the backbone's BatchNorm momentum (likewise set after building).
        augmentation: a Keras layer applied to the images in training, or None.
        name: the model's name (default "efficientnet_<variant>").

    Example:

    ```python
    model = build_efficientnet(9, image_size=64, variant="tiny", metadata_dim=11)
    probabilities = model.predict({"image": images_uint8, "metadata": metadata})  # (n, 9)
    ```
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
    if not 0.0 <= dropout < 1.0 or not 0.0 <= metadata_dropout < 1.0:
        raise ValueError(f"dropout rates must be in [0, 1), got {dropout} and {metadata_dropout}.")
    if dropout_samples < 1 or metadata_dim < 0 or num_classes < 1:
        raise ValueError("dropout_samples and num_classes must be >= 1, metadata_dim >= 0.")
    if not 0.0 <= drop_connect_rate < 1.0 or not 0.0 <= batch_norm_momentum < 1.0:
        raise ValueError("drop_connect_rate and batch_norm_momentum must be in [0, 1).")

    backbone = _backbone(variant, weights, image_size)
    set_drop_connect_rate(backbone, drop_connect_rate)
    set_batch_norm_momentum(backbone, batch_norm_momentum)

    images = keras.Input((image_size, image_size, 3), name=IMAGE_INPUT, dtype="uint8")
    x = layers.Lambda(lambda t: keras.ops.cast(t, "float32"), name="to_float")(images)
    if augmentation is not None:
        x = augmentation(x)
    features = backbone(x)
    inputs = {IMAGE_INPUT: images}
    if metadata_dim:
        metadata = keras.Input((metadata_dim,), name=METADATA_INPUT, dtype="float32")
        inputs[METADATA_INPUT] = metadata
        m = metadata
        for i, units in enumerate(metadata_units):
            m = layers.Dense(units, name=f"metadata_dense{i}")(m)
            m = layers.BatchNormalization(name=f"metadata_bn{i}")(m)
            m = layers.Activation("swish", name=f"metadata_swish{i}")(m)
            if i == 0:
                m = layers.Dropout(metadata_dropout, name="metadata_dropout")(m)
        features = layers.Concatenate(name="concat")([features, m])
    head = layers.Dense(num_classes, dtype="float32", name="logits")
    # Multi-sample dropout: each copy drops other units; one dense layer sees them all.
    samples = [head(layers.Dropout(dropout, name=f"head_dropout{i}")(features)) for i in range(dropout_samples)]
    logits = samples[0] if dropout_samples == 1 else layers.Average(name="average")(samples)
    probabilities = layers.Activation("softmax", dtype="float32", name=OUTPUT_NAME)(logits)
    return keras.Model(inputs, probabilities, name=name or f"efficientnet_{variant}")


def _backbone(variant: str, weights, image_size: int) -> keras.Model:
    kwargs = dict(include_top=False, pooling="avg", input_shape=(image_size, image_size, 3), name=BACKBONE_NAME)
    if variant != "tiny":
        return build_application(APPLICATIONS[variant], weights, **kwargs)
    if weights is not None:
        raise ValueError(f"The 'tiny' variant has no pretrained weights; got weights={weights!r}, expected None.")
    # keras.applications exposes B0-B7 only; its generic constructor builds the same
    # blocks at any width and depth (a private module, pinned by keras>=3.15,<4).
    from keras.src.applications.efficientnet import EfficientNet

    return EfficientNet(_TINY_WIDTH, _TINY_DEPTH, image_size, weights=None, **kwargs)


def set_drop_connect_rate(backbone: keras.Model, rate: float) -> None:
    """Rescales every block's drop-connect so the last block drops `rate` (keras' default: 0.2).

    A Dropout layer reads its rate when called, so changing it after building takes effect.
    """
    for layer in backbone.layers:
        if isinstance(layer, layers.Dropout) and _DROP_CONNECT.match(layer.name):
            if not hasattr(layer, "_keras_rate"):
                layer._keras_rate = layer.rate  # the depth-scaled rate keras built it with
            layer.rate = layer._keras_rate * rate / _KERAS_DROP_CONNECT_RATE


def set_batch_norm_momentum(backbone: keras.Model, momentum: float) -> None:
    """Sets the momentum of the backbone's BatchNorm layers (read at every training call)."""
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = momentum


def set_trainable_stage(model: keras.Model, stage: str) -> None:
    """`head` trains everything but the backbone; `full` trains the whole model."""
    if stage not in ("head", "full"):
        raise ValueError(f"unknown stage {stage!r} (known: head, full)")
    model.get_layer(BACKBONE_NAME).trainable = stage == "full"

