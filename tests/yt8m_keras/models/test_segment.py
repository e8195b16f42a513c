import keras
import numpy as np
import pytest

from yt8m_keras.models.dbof import build_gated_dbof_video_model
from yt8m_keras.models.nextvlad import build_nextvlad_video_model
from yt8m_keras.models.segment import (
    SEGMENT_LAYER_PREFIX,
    FrozenEncoder,
    build_context_agnostic_segment_model,
    build_context_aware_segment_model,
    clone_encoder,
    segment_encoder_variables,
    video_embedding_model,
)

NUM_CLASSES = 4
SEGMENT_FRAMES = 11  # 5 segment frames widened by 3 on each side
VIDEO_FRAMES = 20


def tiny_nextvlad(**kwargs):
    return build_nextvlad_video_model(
        NUM_CLASSES, cluster_size=4, groups=2, expansion=1, hidden_size=16,
        batch_norm_momentum=0.5, **kwargs,
    )


def segment_batch(segment_lengths, video_lengths, seed=0, segment_frames=SEGMENT_FRAMES,
                  video_frames=VIDEO_FRAMES):
    rng = np.random.default_rng(seed)
    batch = {}
    for prefix, lengths, frames in (
        ("segment_", segment_lengths, segment_frames),
        ("", video_lengths, video_frames),
    ):
        mask = (np.arange(frames)[None, :] < np.asarray(lengths)[:, None]).astype("float32")
        for name, size in (("rgb", 1024), ("audio", 128)):
            values = rng.integers(0, 256, (len(lengths), frames, size), dtype=np.uint8)
            batch[prefix + name] = values * mask[..., None].astype(np.uint8)  # quantized, zero-padded
        batch[prefix + "mask"] = mask
    return batch


def pad(batch, segment_extra, video_extra):
    padded = {}
    for key, value in batch.items():
        extra = segment_extra if key.startswith("segment_") else video_extra
        zeros = np.zeros(value.shape[:1] + (extra,) + value.shape[2:], value.dtype)
        padded[key] = np.concatenate([value, zeros], axis=1)
    return padded


def video_part(batch, prefix):
    return {name: batch[prefix + name] for name in ("rgb", "audio", "mask")}


@pytest.fixture(scope="module")
def video_model():
    keras.utils.set_random_seed(0)
    return tiny_nextvlad(num_frames=8, cluster_dropout=0.25)


def test_context_agnostic_is_video_model_on_segment_frames(video_model):
    model = build_context_agnostic_segment_model(video_model)
    assert set(model.input) == {
        "segment_rgb", "segment_audio", "segment_mask", "rgb", "audio", "mask"
    }
    assert model.output_names == ["predictions"]
    batch = segment_batch([11, 5, 0], [20, 9, 3])
    probabilities = np.asarray(model(batch, training=False))
    assert probabilities.shape == (3, NUM_CLASSES)
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    np.testing.assert_allclose(
        probabilities,
        np.asarray(video_model(video_part(batch, "segment_"), training=False)),
        rtol=1e-6,
    )
    # The whole-video inputs are accepted and ignored.
    other_video = dict(batch, **video_part(segment_batch([1, 1, 1], [20, 20, 20], seed=9), ""))
    np.testing.assert_allclose(np.asarray(model(other_video, training=False)), probabilities)


def test_context_agnostic_padding_does_not_change_predictions(video_model):
    model = build_context_agnostic_segment_model(video_model)
    batch = segment_batch([11, 6], [20, 4], seed=1)
    np.testing.assert_allclose(
        np.asarray(model(pad(batch, 5, 7), training=False)),
        np.asarray(model(batch, training=False)),
        rtol=1e-5, atol=1e-6,
    )


def test_video_embedding_model_is_the_pre_classifier_embedding(video_model):
    encoder = video_embedding_model(video_model)
    assert encoder.output.shape == (None, 16)
    # Same layers, so same weights.
    assert encoder.get_layer("rgb_nextvlad") is video_model.get_layer("rgb_nextvlad")
    probe = keras.Model(video_model.input, video_model.get_layer("embedding").output)
    videos = video_part(segment_batch([3], [12], seed=2), "")
    np.testing.assert_allclose(
        np.asarray(encoder(videos, training=False)), np.asarray(probe(videos, training=False))
    )
    with pytest.raises(ValueError, match="embedding"):
        inputs = {name: keras.Input((None, 4), name=name) for name in ("rgb", "audio", "mask")}
        no_embedding = keras.Model(inputs, keras.layers.Concatenate()(list(inputs.values())))
        video_embedding_model(no_embedding)


def test_clone_encoder_copies_weights_into_separate_prefixed_variables(video_model):
    encoder = video_embedding_model(video_model)
    copy = clone_encoder(encoder)
    assert copy.name == "segment_encoder"
    assert not {id(v) for v in copy.weights} & {id(v) for v in encoder.weights}
    assert all(v.path.startswith(SEGMENT_LAYER_PREFIX) for v in copy.weights)
    for original, cloned in zip(encoder.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(original, cloned)
    videos = video_part(segment_batch([3, 12], [12, 12], seed=3), "")
    np.testing.assert_allclose(
        np.asarray(copy(videos, training=False)), np.asarray(encoder(videos, training=False)),
        rtol=1e-6,
    )


def test_clone_of_a_frozen_encoder_is_trainable():
    video_model = tiny_nextvlad()
    encoder = video_embedding_model(video_model)
    expected = len(encoder.trainable_variables)
    encoder.trainable = False
    frozen_copy = FrozenEncoder.from_config(FrozenEncoder(encoder).get_config()).encoder
    assert not any(v.trainable for v in frozen_copy.weights)
    assert len(clone_encoder(frozen_copy).trainable_variables) == expected


def test_context_aware_outputs_padding_invariance_and_saving(tmp_path):
    keras.utils.set_random_seed(1)
    video_model = build_gated_dbof_video_model(
        NUM_CLASSES, cluster_size=16, hidden_size=8, frame_gating_reduction=4,
        video_gating_reduction=2, batch_norm_momentum=0.5,
    )
    model = build_context_aware_segment_model(
        video_embedding_model(video_model), None, num_classes=3, hidden_size=12,
        gating_reduction=3, num_experts=2, gating=True,
    )
    assert model.output_names == ["predictions"]
    batch = segment_batch([11, 4, 0], [20, 6, 0], seed=4)
    probabilities = np.asarray(model(batch, training=False))
    assert probabilities.shape == (3, 3)
    assert np.all(np.isfinite(probabilities))
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    np.testing.assert_allclose(
        np.asarray(model(pad(batch, 4, 9), training=False)), probabilities, rtol=1e-5, atol=1e-6
    )

    # A saved and reloaded model predicts the same and keeps its video encoder frozen.
    path = str(tmp_path / "context_aware.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(reloaded(batch, training=False)), probabilities,
                               rtol=1e-6)
    assert len(reloaded.trainable_variables) == len(model.trainable_variables)
    assert len(segment_encoder_variables(reloaded)) == len(segment_encoder_variables(model))


def test_context_aware_fit_keeps_video_encoder_frozen_and_trains_segment_encoder():
    # A gated DBoF with frame sampling and dropout: both would act if the frozen encoder
    # ran in training mode. (Fewer ops than NeXtVLAD, so the train step traces faster.)
    keras.utils.set_random_seed(2)
    video_model = build_gated_dbof_video_model(
        NUM_CLASSES, cluster_size=8, hidden_size=8, frame_gating_reduction=2,
        video_gating_reduction=2, dropout=0.5, num_frames=6, batch_norm_momentum=0.5,
    )
    video_encoder = video_embedding_model(video_model)
    model = build_context_aware_segment_model(
        video_encoder, None, num_classes=NUM_CLASSES, hidden_size=8, gating_reduction=2,
    )
    frozen = model.get_layer("video_encoder")
    assert isinstance(frozen, FrozenEncoder)
    segment_variables = segment_encoder_variables(model)
    assert segment_variables
    assert all(v.path.startswith(SEGMENT_LAYER_PREFIX) for v in segment_variables)
    assert len(model.get_layer("segment_encoder").weights) == len(video_encoder.weights)
    # Trainable = segment encoder + head; the video encoder contributes nothing, even
    # after a trainer sets the whole model trainable.
    model.trainable = True
    assert not frozen.trainable_weights
    trainable_ids = {id(v) for v in model.trainable_variables}
    assert not trainable_ids & {id(v) for v in video_encoder.weights}
    assert {id(v) for v in segment_variables} < trainable_ids

    batch = segment_batch([11, 8, 5, 11], [20, 15, 12, 7], seed=5)
    labels = np.random.default_rng(5).integers(0, 2, (4, NUM_CLASSES)).astype("float32")
    videos = video_part(batch, "")
    # The frozen encoder runs in inference mode (no dropout, evenly spaced frames,
    # moving batch-norm statistics) even when the model trains.
    np.testing.assert_allclose(
        np.asarray(frozen(videos, training=True)),
        np.asarray(video_encoder(videos, training=False)),
        rtol=1e-6,
    )
    video_before = [w.copy() for w in video_encoder.get_weights()]
    segment_before = [np.array(v) for v in segment_variables]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy",
                  jit_compile=False)
    model.fit(batch, labels, batch_size=2, epochs=1, verbose=0)

    for before, after in zip(video_before, video_encoder.get_weights()):
        np.testing.assert_array_equal(before, after)
    changed = [
        not np.array_equal(before, np.array(v)) for before, v in zip(segment_before, segment_variables)
    ]
    assert any(changed)


def test_context_aware_wraps_a_differently_named_segment_encoder(video_model):
    video_encoder = video_embedding_model(video_model)
    own = clone_encoder(video_encoder, name="my_encoder", layer_prefix="mine_")
    model = build_context_aware_segment_model(video_encoder, own, NUM_CLASSES, hidden_size=0,
                                              gating_reduction=0)
    wrapped = model.get_layer("segment_encoder")
    assert {id(v) for v in segment_encoder_variables(model)} == {
        id(v) for v in own.trainable_variables
    }
    assert wrapped.get_layer("mine_rgb_nextvlad") is own.get_layer("mine_rgb_nextvlad")


def test_context_aware_rejects_shared_encoders(video_model):
    video_encoder = video_embedding_model(video_model)
    with pytest.raises(ValueError, match="shares variables"):
        build_context_aware_segment_model(video_encoder, video_encoder, NUM_CLASSES)


def test_frozen_encoder_config_round_trip(video_model):
    encoder = video_embedding_model(video_model)
    layer = FrozenEncoder(encoder, name="video_encoder")
    config = layer.get_config()
    clone = FrozenEncoder.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "video_encoder" and not clone.trainable
    # Deserialised layers come back frozen down to every variable.
    assert not any(v.trainable for v in clone.encoder.weights)
    clone.encoder.set_weights(encoder.get_weights())
    videos = video_part(segment_batch([6], [12], seed=6), "")
    np.testing.assert_allclose(
        np.asarray(clone(videos, training=True)), np.asarray(layer(videos, training=True)),
        rtol=1e-6,
    )
