import keras
import numpy as np
import pytest

from yt8m_keras.models import MODELS
from yt8m_keras.models.augmentation import CdiscountAugmentation
from yt8m_keras.models.xception import (
    backbone_block_numbers,
    build_xception,
    set_trainable_stage,
)

TINY_SIZE = 64


def tiny_model(num_classes=4, **kwargs):
    return build_xception(
        num_classes=num_classes, image_size=TINY_SIZE, variant="tiny", **kwargs
    )


def random_pixels(count, size=TINY_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(count, size, size, 3)).astype("float32")


def weighted_layer_names(layer_list):
    return {layer.name for layer in layer_list if layer.weights}


def residual_convs(backbone):
    """The unnamed strided 1x1 convolutions keras.applications uses for residuals."""
    return {
        layer.output.shape[-1]: layer
        for layer in backbone.layers
        if isinstance(layer, keras.layers.Conv2D)
        and not isinstance(layer, keras.layers.SeparableConv2D)
        and tuple(layer.kernel_size) == (1, 1)
    }


def test_registry_maps_name_to_builder():
    assert MODELS["xception"] is build_xception


def test_tiny_outputs_probabilities_per_class():
    model = tiny_model(num_classes=5, hidden_units=8)
    probabilities = model.predict(random_pixels(3), verbose=0)
    assert probabilities.shape == (3, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.output_names == ["probabilities"]
    assert model.get_layer("head_hidden").units == 8


def test_rescaling_maps_pixel_range_to_minus_one_one():
    model = tiny_model()
    rescaled = model.get_layer("rescaling")(np.array([[0.0, 127.5, 255.0]]))
    np.testing.assert_allclose(np.asarray(rescaled), [[-1.0, 0.0, 1.0]])


def test_hidden_units_zero_means_no_hidden_layer():
    model = tiny_model(hidden_units=0)
    assert "head_hidden" not in {layer.name for layer in model.layers}


def test_output_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = tiny_model(hidden_units=8)
    finally:
        keras.config.set_dtype_policy(previous)
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_xception_variant_is_keras_applications_xception():
    # One test on purpose: building the full Xception takes a few seconds.
    model = build_xception(num_classes=7, image_size=180, variant="xception")
    reference = keras.applications.Xception(
        include_top=False, weights=None, input_shape=(180, 180, 3)
    )
    backbone = model.get_layer("backbone")
    assert len(backbone.layers) == len(reference.layers) == 132
    assert backbone.count_params() == reference.count_params()
    assert [type(layer) for layer in backbone.layers] == [
        type(layer) for layer in reference.layers
    ]
    head_params = 2048 * 7 + 7
    assert model.count_params() == reference.count_params() + head_params

    set_trainable_stage(model, "blocks10+")
    trainable = weighted_layer_names(
        layer for layer in backbone.layers if layer.trainable
    )
    residuals = residual_convs(backbone)
    # Exit flow's residual (1024 filters) serves block 13; entry flow's (728) block 4.
    assert residuals[1024].name in trainable
    assert residuals[728].name not in trainable
    named_trainable = {name for name in trainable if name.startswith("block")}
    expected_named = {
        layer.name
        for layer in backbone.layers
        if layer.weights
        and layer.name.startswith(
            ("block10_", "block11_", "block12_", "block13_", "block14_")
        )
    }
    assert named_trainable == expected_named
    # Plus the block 13 residual convolution and its batch norm, nothing else.
    assert len(trainable) == len(expected_named) + 2


def test_stage_top_trains_only_the_head():
    model = tiny_model(hidden_units=8)
    set_trainable_stage(model, "top")
    trainable = {v.path.split("/")[0] for v in model.trainable_variables}
    assert trainable == {"head_hidden", "probabilities"}
    assert all(not layer.trainable for layer in model.get_layer("backbone").layers)


def trainable_mask(model):
    """Which of the model's weights train, by position (unnamed layers' names differ
    between models because Keras numbers them globally)."""
    trainable = {id(v) for v in model.trainable_variables}
    return [id(v) in trainable for v in model.weights]


def test_stage_full_trains_everything_after_any_other_stage():
    fresh = trainable_mask(tiny_model())
    model = tiny_model()
    for stage in ("top", "blocks10+", "full"):
        set_trainable_stage(model, stage)
    # A built model trains every weight but batch-norm moving statistics.
    assert trainable_mask(model) == fresh
    assert all(layer.trainable for layer in model.get_layer("backbone").layers)


def test_stage_result_does_not_depend_on_previous_stage():
    direct = tiny_model()
    set_trainable_stage(direct, "blocks10+")
    switched = tiny_model()
    for stage in ("top", "full", "blocks10+", "top", "blocks10+"):
        set_trainable_stage(switched, stage)
    assert trainable_mask(switched) == trainable_mask(direct)
    assert 0 < sum(trainable_mask(direct)) < sum(trainable_mask(tiny_model()))


def test_stage_blocks10_plus_on_tiny_trains_exit_flow_and_three_blocks_before():
    model = tiny_model()
    set_trainable_stage(model, "blocks10+")
    backbone = model.get_layer("backbone")
    blocks = backbone_block_numbers(backbone)
    # Tiny: entry flow 1-4, middle 5-6, exit flow 7-8 -> blocks 4..8 train.
    assert max(blocks.values()) == 8
    for layer in backbone.layers:
        if not layer.weights:
            continue
        assert layer.trainable == (blocks[layer.name] >= 4), layer.name
    residuals = residual_convs(backbone)
    # Residual widths: 16 (block 2), 32 (block 3), 64 (block 4), 96 (block 7).
    assert not residuals[32].trainable
    assert residuals[64].trainable
    assert residuals[96].trainable
    # Frozen batch norm must be non-trainable so Keras runs it in inference mode.
    assert not backbone.get_layer("block3_sepconv2_bn").trainable
    assert backbone.get_layer("block4_sepconv1_bn").trainable
    assert "probabilities" in {v.path.split("/")[0] for v in model.trainable_variables}


def test_tiny_block_names_follow_keras_applications_scheme():
    backbone = tiny_model().get_layer("backbone")
    names = {layer.name for layer in backbone.layers}
    assert {"block1_conv1", "block1_conv2_bn", "block2_pool", "block4_sepconv2_bn"} <= names
    assert {"block5_sepconv3", "block6_sepconv3_bn", "block7_pool"} <= names
    assert {"block8_sepconv1_act", "block8_sepconv2_act"} <= names
    assert backbone.layers[-1].name == "block8_sepconv2_act"


def test_unknown_stage_and_variant_name_allowed_values():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"'top', 'blocks10\+', 'full'"):
        set_trainable_stage(model, "blocks9+")
    with pytest.raises(ValueError, match="'xception', 'tiny'"):
        build_xception(num_classes=2, variant="resnet")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_xception(num_classes=2, variant="tiny", weights="imagenet")
    with pytest.raises(ValueError, match="image_size >= 32"):
        build_xception(num_classes=2, image_size=16, variant="tiny")


def test_switching_stage_keeps_optimizer_state():
    model = tiny_model(num_classes=2)
    pixels = random_pixels(32, seed=1)
    labels = np.arange(32) % 2
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    set_trainable_stage(model, "full")
    optimizer.build(model.trainable_variables)

    def moments(variable):
        index = optimizer._get_variable_index(variable)
        return optimizer._momentums[index], optimizer._velocities[index]

    head_kernel = model.get_layer("probabilities").kernel
    frozen_kernel = model.get_layer("backbone").get_layer("block2_sepconv1").depthwise_kernel
    frozen_before = np.array(frozen_kernel)
    frozen_bn = model.get_layer("backbone").get_layer("block2_sepconv1_bn")
    moving_mean_before = np.array(frozen_bn.moving_mean)

    set_trainable_stage(model, "top")
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(pixels, labels, batch_size=16, epochs=1, verbose=0)
    assert int(optimizer.iterations) == 2
    head_m, head_v = moments(head_kernel)
    head_m_after_top = np.array(head_m)
    head_v_after_top = np.array(head_v)
    assert np.abs(head_m_after_top).sum() > 0
    np.testing.assert_array_equal(np.array(moments(frozen_kernel)[0]), 0.0)
    np.testing.assert_array_equal(np.array(frozen_kernel), frozen_before)
    # Frozen batch norm ran in inference mode: its moving statistics did not move.
    np.testing.assert_array_equal(np.array(frozen_bn.moving_mean), moving_mean_before)

    set_trainable_stage(model, "full")
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    # Recompiling must neither replace nor reset the optimizer's slots.
    assert model.optimizer is optimizer
    assert moments(head_kernel)[0] is head_m
    np.testing.assert_array_equal(np.array(head_m), head_m_after_top)
    np.testing.assert_array_equal(np.array(head_v), head_v_after_top)

    # Mark the carried second moment so the next fit shows whether it starts from it:
    # Adam's v only decays by beta_2 per step and adds (1 - beta_2) * g^2 >= 0, so after
    # two steps a carried v is >= beta_2^2 * marker, while a reset v would be ~g^2 / 500.
    marker = 1.0
    head_v.assign(np.full(head_v.shape, marker, dtype="float32"))
    history = model.fit(pixels, labels, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(optimizer.iterations) == 4
    assert np.all(np.array(moments(head_kernel)[1]) >= optimizer.beta_2**2 * marker)
    # The backbone, frozen until now, trains from here on.
    assert not np.array_equal(np.array(frozen_kernel), frozen_before)
    assert np.abs(np.array(moments(frozen_kernel)[0])).sum() > 0
    assert not np.array_equal(np.array(frozen_bn.moving_mean), moving_mean_before)


def test_serialization_round_trip(tmp_path):
    model = tiny_model(num_classes=3, hidden_units=8, dropout=0.3,
                       augmentation=CdiscountAugmentation(seed=5, name="augmentation"))
    path = tmp_path / "tiny.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    pixels = random_pixels(2, seed=2)
    np.testing.assert_allclose(
        restored.predict(pixels, verbose=0), model.predict(pixels, verbose=0), rtol=1e-5
    )
    assert restored.get_layer("head_dropout").rate == 0.3
    augmentation = restored.get_layer("augmentation")
    assert isinstance(augmentation, CdiscountAugmentation)
    assert augmentation.get_config() == model.get_layer("augmentation").get_config()
    # Stage rules work on a restored model too (layer names survive serialization).
    set_trainable_stage(restored, "top")
    assert {v.path.split("/")[0] for v in restored.trainable_variables} == {
        "head_hidden",
        "probabilities",
    }


def test_tiny_learns_red_versus_blue():
    rng = np.random.default_rng(3)
    count = 64
    labels = np.arange(count) % 2
    pixels = rng.uniform(0, 60, size=(count, TINY_SIZE, TINY_SIZE, 3)).astype("float32")
    # Class 0 is reddish, class 1 bluish; the noise keeps the task from being constant.
    pixels[labels == 0, ..., 0] += 180
    pixels[labels == 1, ..., 2] += 180
    keras.utils.set_random_seed(3)
    model = tiny_model(num_classes=2)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(pixels, labels, batch_size=16, epochs=5, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_augmentation_runs_first_in_training_only():
    plain = tiny_model(num_classes=3)
    model = tiny_model(num_classes=3, augmentation=CdiscountAugmentation(seed=0, name="augmentation"))
    assert [w.shape for w in model.weights] == [w.shape for w in plain.weights]  # no weights added
    model.set_weights(plain.get_weights())
    pixels = random_pixels(8)
    # The augmentation sits between the input and the rescaling, and acts in training only.
    front = keras.Model(model.input, model.get_layer("rescaling").input)
    assert front.layers[-1].name == "augmentation"
    np.testing.assert_array_equal(np.asarray(front(pixels, training=False)), pixels)
    assert not np.array_equal(np.asarray(front(pixels, training=True)), pixels)
    # Inference is the plain model's.
    np.testing.assert_allclose(np.asarray(model(pixels, training=False)), np.asarray(plain(pixels, training=False)),
                               rtol=1e-5, atol=1e-7)
    # Training draws (the seed state moves); inference does not.
    state = model.get_layer("augmentation").seed_generator.state
    before = np.asarray(state)
    model(pixels, training=True)
    after = np.asarray(state)
    assert not np.array_equal(after, before)
    model(pixels, training=False)
    np.testing.assert_array_equal(np.asarray(state), after)
    assert not any(v is state for v in model.weights)  # a model variable, not a weight
    assert any(v is state for v in model.variables)
