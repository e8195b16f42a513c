import keras
import numpy as np
import pytest

from yt8m_keras.models.moe import ContextGating, MixtureOfExperts

BN_EPSILON = 1e-3  # Keras' BatchNormalization default


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def batch_norm_inference(x, gamma, beta, mean, variance):
    return (x - mean) / np.sqrt(variance + BN_EPSILON) * gamma + beta


def randomise_weights(layer, seed):
    rng = np.random.default_rng(seed)
    weights = []
    for variable in layer.weights:
        shape = tuple(variable.shape)
        if "moving_variance" in variable.path:
            weights.append(rng.uniform(0.5, 2.0, shape))
        else:
            weights.append(rng.normal(0.0, 0.5, shape))
    layer.set_weights([w.astype("float32") for w in weights])


def numpy_moe(layer, x):
    """The starter code's MoeModel (+ Miech et al.'s output gating) in NumPy."""
    c, e = layer.num_classes, layer.num_experts
    gate_logits = x @ layer.gates.kernel.numpy()
    expert_logits = x @ layer.experts.kernel.numpy() + layer.experts.bias.numpy()
    groups = c if layer.per_class_gates else 1
    gates = softmax(gate_logits.reshape(-1, groups, e + 1))[..., :e]
    experts = sigmoid(expert_logits.reshape(-1, c, e))
    p = (gates * experts).sum(-1)
    if layer.gating:
        gating = layer.output_gating
        z = p @ gating.squeeze.kernel.numpy()
        bn = gating.squeeze_bn
        z = batch_norm_inference(
            z, bn.gamma.numpy(), bn.beta.numpy(), bn.moving_mean.numpy(), bn.moving_variance.numpy()
        )
        p = p * sigmoid(z)
    return p


@pytest.mark.parametrize(
    "gating,per_class_gates", [(False, True), (True, True), (False, False), (True, False)]
)
def test_moe_matches_numpy_reimplementation(gating, per_class_gates):
    layer = MixtureOfExperts(
        num_classes=5, num_experts=3, gating=gating, per_class_gates=per_class_gates
    )
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    layer.build(x.shape)
    randomise_weights(layer, seed=1)
    got = np.asarray(layer(x, training=False))
    np.testing.assert_allclose(got, numpy_moe(layer, x), rtol=1e-5, atol=1e-6)
    assert got.shape == (4, 5)


def test_moe_probabilities_in_unit_interval_even_for_extreme_inputs():
    layer = MixtureOfExperts(num_classes=7, num_experts=2)
    x = np.random.default_rng(1).normal(scale=100.0, size=(16, 8)).astype("float32")
    for training in (False, True):
        p = np.asarray(layer(x, training=training))
        assert p.shape == (16, 7)
        assert np.all(np.isfinite(p)) and p.min() >= 0.0 and p.max() <= 1.0


def test_moe_dummy_expert_and_regularisation():
    layer = MixtureOfExperts(num_classes=3, num_experts=2, gating=False, l2_penalty=1e-8)
    layer.build((None, 4))
    # The gate has one logit per expert plus the dummy, per class, and no bias.
    assert tuple(layer.gates.kernel.shape) == (4, 3 * 3)
    assert layer.gates.bias is None
    assert tuple(layer.experts.kernel.shape) == (4, 3 * 2)
    layer(np.ones((1, 4), "float32"))
    assert len(layer.losses) == 2


def test_moe_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = MixtureOfExperts(num_classes=3, num_experts=2, dtype="float32")
        inputs = keras.Input((8,))
        outputs = layer(keras.layers.Dense(8)(inputs))
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.output_gating.squeeze.compute_dtype == "float32"
    assert outputs.dtype == "float32"


def test_context_gating_matches_formula():
    x = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
    plain = ContextGating(reduction=1, batch_norm=False)
    plain.build(x.shape)
    randomise_weights(plain, seed=3)
    expected = x * sigmoid(x @ plain.squeeze.kernel.numpy() + plain.squeeze.bias.numpy())
    np.testing.assert_allclose(np.asarray(plain(x)), expected, rtol=1e-5, atol=1e-6)

    se = ContextGating(reduction=3, batch_norm=True)
    se.build(x.shape)
    randomise_weights(se, seed=4)
    bn = se.squeeze_bn
    hidden = batch_norm_inference(
        x @ se.squeeze.kernel.numpy(),
        bn.gamma.numpy(), bn.beta.numpy(), bn.moving_mean.numpy(), bn.moving_variance.numpy(),
    )
    gates = sigmoid(np.maximum(hidden, 0.0) @ se.excite.kernel.numpy() + se.excite.bias.numpy())
    assert tuple(se.squeeze.kernel.shape) == (6, 2)
    np.testing.assert_allclose(np.asarray(se(x, training=False)), x * gates, rtol=1e-5, atol=1e-6)


def test_per_frame_context_gating_ignores_padded_frames_in_training():
    rng = np.random.default_rng(5)
    frames = rng.normal(size=(2, 4, 6)).astype("float32")
    mask = np.ones((2, 4), "float32")
    # Padding with garbage: the masked batch-norm statistics must not see it.
    padded = np.concatenate([frames, rng.normal(50.0, 9.0, (2, 3, 6)).astype("float32")], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((2, 3), "float32")], axis=1)
    gate = ContextGating(reduction=2)
    short = np.asarray(gate(frames, training=True, mask=mask))
    long = np.asarray(gate(padded, training=True, mask=padded_mask))
    np.testing.assert_allclose(long[:, :4], short, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "layer",
    [
        MixtureOfExperts(num_classes=4, num_experts=3, gating=True, per_class_gates=False,
                         gating_batch_norm=False, l2_penalty=1e-6, batch_norm_momentum=0.5,
                         name="head"),
        ContextGating(reduction=2, batch_norm=False, batch_norm_momentum=0.9, name="gate"),
    ],
    ids=["MixtureOfExperts", "ContextGating"],
)
def test_config_round_trip(layer):
    x = np.random.default_rng(6).normal(size=(3, 8)).astype("float32")
    expected = np.asarray(layer(x))
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), expected, rtol=1e-6)
    frozen = layer.__class__.from_config(dict(layer.get_config(), trainable=False))
    frozen.build(x.shape)
    assert frozen.weights and not any(v.trainable for v in frozen.weights)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_experts"):
        MixtureOfExperts(num_classes=3, num_experts=0)
    with pytest.raises(ValueError, match="reduction"):
        ContextGating(reduction=0)
