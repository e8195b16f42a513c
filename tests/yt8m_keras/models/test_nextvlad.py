import keras
import numpy as np
import pytest
from video_samples import mean_auc, pad, random_videos, separable_videos

from yt8m_keras.models.nextvlad import NeXtVLAD, build_nextvlad_video_model

TINY = dict(cluster_size=4, groups=2, expansion=1, hidden_size=16, batch_norm_momentum=0.5)


def test_layer_output_is_unit_norm_descriptor():
    frames = np.random.default_rng(0).normal(size=(3, 7, 32)).astype("float32")
    mask = np.ones((3, 7), "float32")
    layer = NeXtVLAD(cluster_size=5, groups=4, expansion=2)
    descriptor = np.asarray(layer(frames, mask))
    # K * lambda * D / G = 5 * 2 * 32 / 4
    assert descriptor.shape == (3, 80)
    np.testing.assert_allclose(np.linalg.norm(descriptor, axis=-1), 1.0, rtol=1e-5)
    # Intra-normalisation: each cluster's residual has the same norm, 1 / sqrt(K).
    per_cluster = np.linalg.norm(descriptor.reshape(3, 5, 16), axis=-1)
    np.testing.assert_allclose(per_cluster, 1 / np.sqrt(5), rtol=1e-4)


@pytest.mark.parametrize("training", [False, True])
def test_layer_ignores_padded_frames_even_with_garbage_values(training):
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(2, 5, 16)).astype("float32")
    mask = np.ones((2, 5), "float32")
    garbage = rng.normal(30.0, 10.0, (2, 4, 16)).astype("float32")
    padded = np.concatenate([frames, garbage], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((2, 4), "float32")], axis=1)
    layer = NeXtVLAD(cluster_size=3, groups=2, expansion=2)
    # In training the assignment batch norm uses masked statistics; in inference its
    # moving ones. Either way padded frames must not matter.
    np.testing.assert_allclose(
        np.asarray(layer(padded, padded_mask, training=training)),
        np.asarray(layer(frames, mask, training=training)),
        rtol=1e-5, atol=1e-6,
    )


def test_layer_empty_video_is_zero_not_nan():
    frames = np.random.default_rng(2).normal(size=(2, 4, 8)).astype("float32")
    mask = np.array([[0.0] * 4, [1.0] * 4], "float32")
    descriptor = np.asarray(NeXtVLAD(cluster_size=2, groups=2)(frames, mask))
    assert np.all(np.isfinite(descriptor))
    np.testing.assert_array_equal(descriptor[0], 0.0)


def test_cluster_dropout_drops_whole_clusters_in_training_only():
    frames = np.random.default_rng(3).normal(size=(4, 6, 8)).astype("float32")
    layer = NeXtVLAD(cluster_size=6, groups=2, expansion=1, cluster_dropout=0.5)
    inference = np.asarray(layer(frames, training=False))
    np.testing.assert_allclose(np.linalg.norm(inference, axis=-1), 1.0, rtol=1e-5)
    dropped = np.asarray(layer(frames, training=True)).reshape(4, 6, 4)
    zero_clusters = np.all(dropped == 0.0, axis=-1)
    assert zero_clusters.any()
    # A cluster is kept or dropped as a whole.
    assert np.all(np.any(dropped != 0.0, axis=-1) == ~zero_clusters)


def test_layer_config_round_trip():
    layer = NeXtVLAD(cluster_size=3, groups=2, expansion=2, cluster_dropout=0.1,
                     batch_norm_momentum=0.9, name="vlad")
    frames = np.random.default_rng(4).normal(size=(2, 5, 8)).astype("float32")
    expected = np.asarray(layer(frames))
    clone = NeXtVLAD.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(frames.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(frames)), expected, rtol=1e-6)
    # A layer created frozen (e.g. deserialised from a frozen model) builds frozen
    # sublayers too.
    frozen = NeXtVLAD.from_config(dict(layer.get_config(), trainable=False))
    frozen.build(frames.shape)
    assert frozen.weights and not any(v.trainable for v in frozen.weights)


def test_layer_rejects_indivisible_groups():
    with pytest.raises(ValueError, match="divisible"):
        NeXtVLAD(cluster_size=2, groups=3, expansion=1)(np.zeros((1, 2, 8), "float32"))


def test_model_outputs_probabilities_named_predictions():
    model = build_nextvlad_video_model(num_classes=6, num_frames=5, **TINY)
    videos = random_videos([12, 3, 0], max_frames=12)
    probabilities = np.asarray(model(videos, training=False))
    assert probabilities.shape == (3, 6)
    assert np.all(np.isfinite(probabilities))
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    assert model.output_names == ["predictions"]
    assert model.get_layer("audio_nextvlad").cluster_size == 2
    assert model.get_layer("audio_nextvlad").groups == 1
    assert model.get_layer("embedding").output.shape == (None, 16)


@pytest.mark.parametrize("num_frames", [None, 5])
def test_model_padding_does_not_change_predictions(num_frames):
    model = build_nextvlad_video_model(num_classes=4, num_frames=num_frames, **TINY)
    videos = random_videos([12, 7, 2, 0], max_frames=12, seed=5)
    expected = np.asarray(model(videos, training=False))
    np.testing.assert_allclose(
        np.asarray(model(pad(videos, 9), training=False)), expected, rtol=1e-5, atol=1e-6
    )


def test_model_output_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_nextvlad_video_model(num_classes=3, **TINY)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("rgb_nextvlad").compute_dtype == "float16"
    assert model.output.dtype == "float32"
    probabilities = model(random_videos([4, 2], max_frames=4), training=False)
    assert probabilities.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(probabilities)))


def test_tiny_model_learns_separable_multilabel_task():
    train, train_labels = separable_videos(64, num_classes=3, seed=0)
    test, test_labels = separable_videos(48, num_classes=3, seed=1)
    keras.utils.set_random_seed(0)
    model = build_nextvlad_video_model(num_classes=3, dropout=0.2, **TINY)
    untrained = mean_auc(test_labels, np.asarray(model(test, training=False)))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="binary_crossentropy",
        jit_compile=False,
    )
    model.fit(train, train_labels, batch_size=16, epochs=5, verbose=0)
    scores = np.asarray(model(test, training=False))
    trained = mean_auc(test_labels, scores)
    # Chance is 0.5; the untrained model scores about that.
    assert trained > 0.85 and trained > untrained + 0.1
