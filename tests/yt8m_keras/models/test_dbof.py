import keras
import numpy as np
import pytest
from video_samples import mean_auc, pad, random_videos, separable_videos

from yt8m_keras.models.dbof import (
    FramePooling,
    build_dbof_video_model,
    build_gated_dbof_video_model,
)

TINY_DBOF = dict(cluster_size=16, hidden_size=8, batch_norm_momentum=0.5)
TINY_GATED = dict(
    cluster_size=16, hidden_size=16, frame_gating_reduction=4, video_gating_reduction=4,
    batch_norm_momentum=0.5,
)


def test_frame_pooling_uses_real_frames_only():
    frames = np.array(
        [[[1.0, -5.0], [3.0, -1.0], [100.0, 100.0]],
         [[-2.0, -4.0], [-6.0, -8.0], [0.0, 0.0]],
         [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0]]],
        "float32",
    )
    mask = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], "float32")
    np.testing.assert_allclose(
        np.asarray(FramePooling("max")(frames, mask)), [[3, -1], [-2, -4], [0, 0]]
    )
    np.testing.assert_allclose(
        np.asarray(FramePooling("average")(frames, mask)), [[2, -3], [-4, -6], [0, 0]]
    )
    both = np.asarray(FramePooling("average_max")(frames, mask))
    np.testing.assert_allclose(both, [[2, -3, 3, -1], [-4, -6, -2, -4], [0, 0, 0, 0]])


def test_frame_pooling_config_round_trip_and_validation():
    layer = FramePooling("average_max", name="pool")
    clone = FramePooling.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="pooling method"):
        FramePooling("median")


@pytest.mark.parametrize(
    "builder,kwargs",
    [
        (build_dbof_video_model, dict(TINY_DBOF, num_frames=6)),
        (build_dbof_video_model, dict(TINY_DBOF, num_frames=None, pooling="average_max")),
        (build_gated_dbof_video_model, dict(TINY_GATED)),
        (build_gated_dbof_video_model, dict(TINY_GATED, num_frames=6, gating=True)),
    ],
    ids=["dbof-sampled", "dbof-all-frames", "gated", "gated-sampled-output-gating"],
)
def test_padding_does_not_change_predictions(builder, kwargs):
    model = builder(num_classes=5, **kwargs)
    videos = random_videos([12, 5, 1, 0], max_frames=12, seed=1)
    expected = np.asarray(model(videos, training=False))
    assert expected.shape == (4, 5)
    assert np.all(np.isfinite(expected))
    assert expected.min() >= 0.0 and expected.max() <= 1.0
    np.testing.assert_allclose(
        np.asarray(model(pad(videos, 8), training=False)), expected, rtol=1e-5, atol=1e-6
    )
    assert model.output_names == ["predictions"]


def test_dbof_matches_starter_code_structure():
    model = build_dbof_video_model(num_classes=3, **TINY_DBOF)
    assert model.get_layer("frame_sampler").num_samples == 30
    assert model.get_layer("frame_projection").units == 16
    assert model.get_layer("frame_pooling").method == "max"
    assert model.get_layer("embedding").output.shape == (None, 8)
    no_bn = build_dbof_video_model(num_classes=3, add_batch_norm=False, **TINY_DBOF)
    assert "frame_projection_bn" not in {layer.name for layer in no_bn.layers}
    assert no_bn.get_layer("frame_projection").use_bias


def test_gated_dbof_structure():
    model = build_gated_dbof_video_model(num_classes=3, **TINY_GATED)
    names = [layer.name for layer in model.layers]
    order = ["frame_projection", "frame_context_gating", "frame_pooling", "hidden",
             "video_context_gating", "embedding", "predictions"]
    assert [name for name in names if name in order] == order
    assert model.get_layer("frame_pooling").method == "average_max"
    assert model.get_layer("predictions").num_experts == 4


def test_gated_dbof_output_stays_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_gated_dbof_video_model(num_classes=3, **TINY_GATED)
    finally:
        keras.config.set_dtype_policy(previous)
    probabilities = model(random_videos([4, 2], max_frames=4), training=False)
    assert probabilities.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(probabilities)))


def test_tiny_gated_dbof_learns_separable_multilabel_task():
    train, train_labels = separable_videos(64, num_classes=3, seed=0)
    test, test_labels = separable_videos(48, num_classes=3, seed=1)
    keras.utils.set_random_seed(0)
    model = build_gated_dbof_video_model(num_classes=3, dropout=0.2, num_frames=4, **TINY_GATED)
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
