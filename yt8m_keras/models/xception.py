"""Xception image classifier: the Cdiscount winners' model, plus a tiny twin for tests.

The backbone is `keras.applications.Xception` (variant `"xception"`) or a narrow, shallow
copy of the same architecture (variant `"tiny"`) whose layers carry the same names, so that
the trainable-stage rules in `set_trainable_stage` apply to both unchanged.
"""

import re

import keras
from keras import layers

from yt8m_keras.models.pretrained import build_application

VARIANTS = ("xception", "tiny")
STAGES = ("top", "blocks10+", "full")

BACKBONE_NAME = "backbone"
OUTPUT_NAME = "probabilities"

# Xception's exit flow is always its last two blocks (13 and 14 in keras.applications).
# "blocks10+" unfreezes the exit flow plus the three blocks before it; stated relative to
# the exit flow so the tiny variant (fewer middle blocks) gets the analogous layers.
_EXIT_FLOW_BLOCKS = 2
_BLOCKS_BEFORE_EXIT_FLOW = 3

# Tiny variant: Xception's entry/middle/exit widths (64/128/256/728, 728, 1024/1536/2048)
# scaled down so a few hundred 64-96 px images train in seconds per epoch on CPU.
_TINY_STEM_WIDTHS = (8, 16)
_TINY_ENTRY_WIDTHS = (16, 32, 64)
_TINY_MIDDLE_WIDTH = 64
_TINY_MIDDLE_BLOCKS = 2
_TINY_EXIT_WIDTHS = (96, 128, 160)
# Two valid 3x3 convolutions then five stride-2 poolings still leave a >= 1x1 feature map.
_TINY_MIN_IMAGE_SIZE = 32
# Tiny runs last a few hundred steps: with Keras' default momentum (0.99) the moving
# statistics would still be mostly their initial values, and inference-mode accuracy
# stays at chance while training accuracy is high.
_TINY_BN_MOMENTUM = 0.9

_BLOCK_NAME = re.compile(r"^block(\d+)_")


def build_xception(
    num_classes,
    image_size=180,
    variant="xception",
    weights=None,
    dropout=0.2,
    hidden_units=0,
    augmentation=None,
    name=None,
):
    """Builds an Xception classifier that takes raw pixels and returns class probabilities.

    The model rescales its float32 input pixels in [0, 255] to [-1, 1] itself (Xception's
    preprocessing), so serving can feed decoded JPEG pixels directly. An `augmentation`
    layer, if given, runs first, on the raw pixels: Keras passes it `training`, so it
    augments in `fit` only and leaves predictions and serving unchanged. The head is global
    average pooling, dropout, an optional ReLU dense layer (the Cdiscount winners' second
    dense layer, worth about +0.5 % accuracy) and a softmax dense layer named
    `"probabilities"`. The head's dense layers compute in float32 so the output stays
    float32 under a mixed-precision policy.

    The backbone is a nested model named `"backbone"`; use `set_trainable_stage` to choose
    which of its blocks train.

    Args:
        num_classes: int, number of output classes.
        image_size: int, height and width of the square input images.
            `"xception"` needs at least 71 (a `keras.applications` limit), `"tiny"` at
            least 32.
        variant: `"xception"` for `keras.applications.Xception(include_top=False)`, or
            `"tiny"` for a narrow, shallow copy with the same layer names (entry flow
            blocks 1-4, middle flow blocks 5-6, exit flow blocks 7-8) for tests and quick
            experiments.
        weights: `None` (random initialisation), `"imagenet"` or a path to a weights file,
            passed to `keras.applications.Xception`. The `"tiny"` variant has no
            pretrained weights and accepts only `None`.
        dropout: float in [0, 1), dropout rate after global average pooling.
        hidden_units: int, width of the optional ReLU dense layer before the classifier;
            0 means no hidden layer.
        augmentation: optional Keras layer mapping `[B, S, S, 3]` pixels in [0, 255] to
            pixels of the same shape and scale, the identity unless `training` (e.g.
            `CdiscountAugmentation`); `None` for none.
        name: optional model name; defaults to `"{variant}_classifier"`.

    Returns:
        A functional `keras.Model` mapping `images` of shape
        `(batch, image_size, image_size, 3)` to `probabilities` of shape
        `(batch, num_classes)`.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models import MODELS
    from yt8m_keras.models.xception import set_trainable_stage

    model = MODELS["xception"](num_classes=5, image_size=64, variant="tiny")
    set_trainable_stage(model, "top")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = np.random.uniform(0, 255, size=(8, 64, 64, 3)).astype("float32")
    probabilities = model.predict(images)  # (8, 5), rows sum to 1

    # The Cdiscount seed's random crop and flip, in `fit` only:
    from yt8m_keras.models.augmentation import CdiscountAugmentation

    augmented = MODELS["xception"](num_classes=5, image_size=64, variant="tiny",
                                   augmentation=CdiscountAugmentation(seed=0))
    ```
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if hidden_units < 0:
        raise ValueError(f"hidden_units must be >= 0, got {hidden_units}.")

    input_shape = (image_size, image_size, 3)
    if variant == "xception":
        backbone = build_application(
            keras.applications.Xception,
            weights,
            include_top=False,
            input_shape=input_shape,
            name=BACKBONE_NAME,
        )
    else:
        if weights is not None:
            raise ValueError(
                f"The 'tiny' variant has no pretrained weights; got weights={weights!r}, "
                "expected None."
            )
        if image_size < _TINY_MIN_IMAGE_SIZE:
            raise ValueError(
                f"The 'tiny' variant needs image_size >= {_TINY_MIN_IMAGE_SIZE}, "
                f"got {image_size}."
            )
        backbone = _tiny_xception_backbone(input_shape)

    images = keras.Input(shape=input_shape, dtype="float32", name="images")
    x = images if augmentation is None else augmentation(images)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(x)
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    if hidden_units:
        x = layers.Dense(
            hidden_units, activation="relu", dtype="float32", name="head_hidden"
        )(x)
    probabilities = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name=OUTPUT_NAME
    )(x)
    return keras.Model(images, probabilities, name=name or f"{variant}_classifier")


def _tiny_xception_backbone(input_shape):
    """keras.applications.Xception's graph and layer names with much smaller widths.

    Mirrors `keras.applications.xception.Xception` layer for layer, including leaving the
    residual 1x1 convolutions and their batch norms unnamed, so that stage rules see the
    same structure in both variants.
    """
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(
        _TINY_STEM_WIDTHS[0], 3, strides=2, use_bias=False, name="block1_conv1"
    )(inputs)
    x = layers.BatchNormalization(momentum=_TINY_BN_MOMENTUM, name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(_TINY_STEM_WIDTHS[1], 3, use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(momentum=_TINY_BN_MOMENTUM, name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    # Entry flow: blocks 2-4. Block 2 starts without a ReLU because block 1 ended with one.
    for block, width in enumerate(_TINY_ENTRY_WIDTHS, start=2):
        x = _downsampling_block(
            x, block, (width, width), leading_relu=block > 2
        )

    # Middle flow: identity-residual blocks of three separable convolutions.
    first_middle = 2 + len(_TINY_ENTRY_WIDTHS)
    for block in range(first_middle, first_middle + _TINY_MIDDLE_BLOCKS):
        residual = x
        for conv in (1, 2, 3):
            x = layers.Activation("relu", name=f"block{block}_sepconv{conv}_act")(x)
            x = _separable_conv_bn(x, _TINY_MIDDLE_WIDTH, f"block{block}_sepconv{conv}")
        x = layers.add([x, residual])

    # Exit flow: one downsampling block, then two separable convolutions without residual.
    first_exit = first_middle + _TINY_MIDDLE_BLOCKS
    x = _downsampling_block(
        x, first_exit, (_TINY_MIDDLE_WIDTH, _TINY_EXIT_WIDTHS[0]), leading_relu=True
    )
    last = first_exit + 1
    for conv, width in enumerate(_TINY_EXIT_WIDTHS[1:], start=1):
        x = _separable_conv_bn(x, width, f"block{last}_sepconv{conv}")
        x = layers.Activation("relu", name=f"block{last}_sepconv{conv}_act")(x)
    return keras.Model(inputs, x, name=BACKBONE_NAME)


def _downsampling_block(x, block, widths, leading_relu):
    """Xception's entry/exit block: two separable convs and a max pool, plus a strided 1x1
    residual convolution (unnamed, as in keras.applications)."""
    residual = layers.Conv2D(widths[1], 1, strides=2, padding="same", use_bias=False)(x)
    residual = layers.BatchNormalization(momentum=_TINY_BN_MOMENTUM)(residual)
    if leading_relu:
        x = layers.Activation("relu", name=f"block{block}_sepconv1_act")(x)
    x = _separable_conv_bn(x, widths[0], f"block{block}_sepconv1")
    x = layers.Activation("relu", name=f"block{block}_sepconv2_act")(x)
    x = _separable_conv_bn(x, widths[1], f"block{block}_sepconv2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
    return layers.add([x, residual])


def _separable_conv_bn(x, width, name):
    x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(momentum=_TINY_BN_MOMENTUM, name=f"{name}_bn")(x)


def set_trainable_stage(model, stage):
    """Chooses which layers of a `build_xception` model train, as in the seed solution.

    Stages:
        - `"top"`: only the head (layers after the backbone) trains.
        - `"blocks10+"`: the head plus the backbone's exit flow and the three blocks
          before it. In `keras.applications.Xception` that is blocks 10-14 (exit flow =
          blocks 13-14); in the tiny variant, blocks 4-8 (exit flow = blocks 7-8). The
          rule: with `last` the highest `block{N}_` number in the backbone, blocks
          `>= last - 4` train.
        - `"full"`: every layer trains.

    Layers are assigned to blocks by their `block{N}_` name prefix. `keras.applications`
    leaves each downsampling block's residual 1x1 convolution, its batch norm and the
    residual `Add` unnamed; those belong to the block of the nearest named layer before
    them in `backbone.layers` order (Keras lists them inside the block they serve, between
    `block{N}_sepconv2_bn` and the next block's first layer).

    Frozen batch-norm layers run in inference mode in Keras 3, so a frozen block keeps its
    moving statistics as well as its weights. The model must be (re)compiled afterwards
    for the change to take effect; compiling again with the same optimizer object keeps
    its state (e.g. Adam's moments) as long as the optimizer was built with every variable
    that will ever train, e.g. `optimizer.build(model.trainable_variables)` while in
    stage `"full"`.

    Args:
        model: a model returned by `build_xception`.
        stage: one of `"top"`, `"blocks10+"`, `"full"`.

    Example:

    ```python
    import keras
    from yt8m_keras.models.xception import build_xception, set_trainable_stage

    model = build_xception(num_classes=10, image_size=64, variant="tiny")
    optimizer = keras.optimizers.Adam()
    set_trainable_stage(model, "full")
    optimizer.build(model.trainable_variables)  # moments for every variable, once
    set_trainable_stage(model, "top")
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    # model.fit(...), then set_trainable_stage(model, "full"), compile again, fit again.
    ```
    """
    if stage not in STAGES:
        raise ValueError(f"Unknown trainable stage {stage!r}; expected one of {STAGES}.")
    backbone = model.get_layer(BACKBONE_NAME)
    if stage == "blocks10+":
        blocks = backbone_block_numbers(backbone)
        first_trainable = (
            max(blocks.values()) - _EXIT_FLOW_BLOCKS - _BLOCKS_BEFORE_EXIT_FLOW + 1
        )
    # Every layer's flag is set explicitly rather than through the containers: on the
    # TensorFlow backend `container.trainable = True` is a no-op when the container's own
    # flag is already True (attribute short-circuit), so it would not unfreeze sublayers.
    model.trainable = True
    backbone.trainable = stage != "top"
    for layer in model.layers:
        if layer is not backbone:
            layer.trainable = True
    for layer in backbone.layers:
        if stage == "full":
            layer.trainable = True
        elif stage == "top":
            layer.trainable = False
        else:
            # The input layer has no block and no weights; freezing it changes nothing.
            layer.trainable = blocks.get(layer.name, 0) >= first_trainable


def backbone_block_numbers(backbone):
    """Maps each backbone layer name to its Xception block number.

    Named layers (`block{N}_...`) give their own number; an unnamed layer takes the number
    of the nearest named layer before it in `backbone.layers` order. Layers before
    `block1_conv1` (the input) are absent from the result.

    Args:
        backbone: the `"backbone"` sub-model of a `build_xception` model.

    Example:

    ```python
    from yt8m_keras.models.xception import backbone_block_numbers, build_xception

    model = build_xception(num_classes=10, variant="xception")
    blocks = backbone_block_numbers(model.get_layer("backbone"))
    blocks["block13_sepconv1"]  # 13
    ```
    """
    blocks = {}
    current = None
    for layer in backbone.layers:
        match = _BLOCK_NAME.match(layer.name)
        if match:
            current = int(match.group(1))
        if current is not None:
            blocks[layer.name] = current
    if not blocks:
        raise ValueError(
            f"Model {backbone.name!r} has no layers named 'block{{N}}_...'; "
            "expected an Xception backbone."
        )
    return blocks
