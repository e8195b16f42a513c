import keras
import numpy as np
import pytest

from yt8m_keras.models.frame_sampling import FrameSampler


def indexed_frames(batch, frames, dim=2):
    """Frame t of video b holds the value 100 * b + t + 1 (never 0) in every channel."""
    values = 100 * np.arange(batch)[:, None] + np.arange(frames)[None, :] + 1
    return np.repeat(values[..., None], dim, axis=-1).astype("float32")


def test_inference_takes_evenly_spaced_real_frames_deterministically():
    frames = indexed_frames(2, 10)
    mask = np.array([[1.0] * 10, [1.0] * 3 + [0.0] * 7], "float32")
    sampler = FrameSampler(num_samples=5)
    sampled, sampled_mask = sampler(frames, mask)
    again, _ = sampler(frames, mask, training=False)
    # floor((i + 0.5) * n / 5): n = 10 -> 1, 3, 5, 7, 9; n = 3 -> 0, 0, 1, 2, 2 (repeats).
    np.testing.assert_array_equal(np.asarray(sampled)[0, :, 0], [2, 4, 6, 8, 10])
    np.testing.assert_array_equal(np.asarray(sampled)[1, :, 0], [101, 101, 102, 103, 103])
    np.testing.assert_array_equal(np.asarray(sampled_mask), np.ones((2, 5)))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(sampled))


def test_padding_does_not_change_inference_samples():
    frames = indexed_frames(1, 6)
    mask = np.ones((1, 6), "float32")
    padded = np.concatenate([frames, np.zeros((1, 9, 2), "float32")], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((1, 9), "float32")], axis=1)
    sampler = FrameSampler(num_samples=4)
    np.testing.assert_array_equal(
        np.asarray(sampler(frames, mask)[0]), np.asarray(sampler(padded, padded_mask)[0])
    )


def test_training_samples_only_real_frames_from_a_non_prefix_mask():
    frames = indexed_frames(3, 12)
    mask = np.zeros((3, 12), "float32")
    mask[0, [1, 4, 5, 9]] = 1.0
    mask[1, :2] = 1.0
    mask[2, 11] = 1.0
    sampled, sampled_mask = FrameSampler(num_samples=50, seed=1)(frames, mask, training=True)
    sampled = np.asarray(sampled)[..., 0]
    for video in range(3):
        real_values = set(frames[video, mask[video] > 0, 0])
        assert set(sampled[video]) <= real_values
    # 50 draws among 4 frames: every real frame shows up.
    assert set(sampled[0]) == set(frames[0, mask[0] > 0, 0])
    np.testing.assert_array_equal(np.asarray(sampled_mask), np.ones((3, 50)))


def test_training_is_seeded_random():
    frames = indexed_frames(2, 30)
    mask = np.ones((2, 30), "float32")
    first = np.asarray(FrameSampler(8, seed=7)(frames, mask, training=True)[0])
    same_seed = FrameSampler(8, seed=7)
    np.testing.assert_array_equal(np.asarray(same_seed(frames, mask, training=True)[0]), first)
    # The seed generator advances: the next call draws other frames.
    assert not np.array_equal(np.asarray(same_seed(frames, mask, training=True)[0]), first)
    other_seed = np.asarray(FrameSampler(8, seed=8)(frames, mask, training=True)[0])
    assert not np.array_equal(other_seed, first)


@pytest.mark.parametrize("training", [False, True])
def test_empty_video_gives_zeros_not_nan(training):
    frames = indexed_frames(2, 5)
    mask = np.array([[0.0] * 5, [1.0] * 2 + [0.0] * 3], "float32")
    sampled, sampled_mask = FrameSampler(4, seed=0)(frames, mask, training=training)
    sampled, sampled_mask = np.asarray(sampled), np.asarray(sampled_mask)
    assert np.all(np.isfinite(sampled))
    np.testing.assert_array_equal(sampled[0], np.zeros((4, 2)))
    np.testing.assert_array_equal(sampled_mask, [[0.0] * 4, [1.0] * 4])


def test_list_of_features_sampled_at_the_same_frames():
    rgb = indexed_frames(2, 9, dim=3)
    audio = indexed_frames(2, 9, dim=1) * -1.0
    mask = np.ones((2, 9), "float32")
    (rgb_s, audio_s), _ = FrameSampler(6, seed=3)([rgb, audio], mask, training=True)
    np.testing.assert_array_equal(np.asarray(rgb_s)[..., 0], -np.asarray(audio_s)[..., 0])


def test_symbolic_shapes_and_config_round_trip():
    rgb = keras.Input((None, 3))
    audio = keras.Input((None, 2))
    mask = keras.Input((None,))
    sampler = FrameSampler(4, seed=5, name="sampler")
    (rgb_s, audio_s), mask_s = sampler([rgb, audio], mask)
    assert (rgb_s.shape, audio_s.shape, mask_s.shape) == ((None, 4, 3), (None, 4, 2), (None, 4))
    clone = FrameSampler.from_config(sampler.get_config())
    assert clone.get_config() == sampler.get_config()
    frames, real = indexed_frames(2, 7), np.ones((2, 7), "float32")
    np.testing.assert_array_equal(
        np.asarray(clone(frames, real, training=True)[0]),
        np.asarray(FrameSampler(4, seed=5)(frames, real, training=True)[0]),
    )


def test_rejects_non_positive_num_samples():
    with pytest.raises(ValueError, match="num_samples"):
        FrameSampler(0)
