import numpy as np
import pytest
import tensorflow as tf

from tfrecords import yt8m_frame, yt8m_video


def _plain_sequence_example(frames=7):
    """An official frame-level record written with plain TensorFlow code, not our encoder."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (frames, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (frames, 128), dtype=np.uint8)
    example = tf.train.SequenceExample()
    example.context.feature["id"].bytes_list.value.append(b"Xy12")
    example.context.feature["labels"].int64_list.value.extend([2, 0])
    example.context.feature["segment_labels"].int64_list.value.extend([2])
    example.context.feature["segment_start_times"].int64_list.value.extend([5])
    example.context.feature["segment_scores"].float_list.value.extend([1.0])
    for name, values in (("rgb", rgb), ("audio", audio)):
        feature_list = example.feature_lists.feature_list[name]
        for row in values:
            feature_list.feature.add().bytes_list.value.append(row.tobytes())
    return example.SerializeToString(), rgb, audio


def test_official_frame_record_parses_to_uint8_padded_and_masked():
    record, rgb, audio = _plain_sequence_example(7)
    video = yt8m_frame.parse(tf.constant(record), num_classes=4, max_frames=10)
    assert video["id"].numpy() == b"Xy12"
    assert video["labels"].numpy().tolist() == [1, 0, 1, 0]
    # The bytes as stored: dequantizing is the model's first layer, not the host's work.
    assert video["rgb"].dtype == tf.uint8 and video["audio"].dtype == tf.uint8
    assert video["rgb"].shape == (10, 1024) and video["audio"].shape == (10, 128)
    np.testing.assert_array_equal(video["rgb"][:7].numpy(), rgb)
    np.testing.assert_array_equal(video["audio"][:7].numpy(), audio)
    assert not video["rgb"][7:].numpy().any() and not video["audio"][7:].numpy().any()
    assert video["mask"].numpy().tolist() == [1] * 7 + [0] * 3 and int(video["num_frames"]) == 7
    assert video["segment_start_times"].numpy().tolist() == [5]
    assert video["segment_scores"].numpy().tolist() == [1.0]


def test_long_videos_are_truncated_and_our_encoder_round_trips():
    _, rgb, audio = _plain_sequence_example(12)
    record = yt8m_frame.encode("v", [1], rgb, audio)
    video = yt8m_frame.parse(tf.constant(record), num_classes=3, max_frames=5)
    assert int(video["num_frames"]) == 5 and video["rgb"].shape == (5, 1024)
    np.testing.assert_array_equal(video["rgb"].numpy(), rgb[:5])


def test_dequantize_is_the_starter_code_formula_and_quantize_inverts_it_exactly():
    levels = np.arange(256, dtype=np.uint8)
    dequantized = yt8m_frame.dequantize(tf.constant(levels)).numpy()
    np.testing.assert_allclose(dequantized, levels.astype(float) * 4 / 255 + 4 / 512 - 2, rtol=0, atol=1e-6)
    assert dequantized.dtype == np.float32
    np.testing.assert_array_equal(yt8m_frame.quantize(dequantized), levels)
    quantized = yt8m_frame.quantize_tensor(tf.constant(dequantized))
    assert quantized.dtype == tf.uint8
    np.testing.assert_array_equal(quantized.numpy(), levels)
    # Other floats: the nearest level, clipped.
    np.testing.assert_array_equal(yt8m_frame.quantize_tensor(tf.constant([-5.0, 0.0, 9.0])).numpy(),
                                  yt8m_frame.quantize(np.array([-5.0, 0.0, 9.0])))


def test_encoder_refuses_malformed_frames():
    with pytest.raises(ValueError, match="quantized uint8"):
        yt8m_frame.encode("v", [], np.zeros([2, 1024]), np.zeros([2, 128], np.uint8))
    with pytest.raises(ValueError, match="rgb has 2 frames, audio 3"):
        yt8m_frame.encode("v", [], np.zeros([2, 1024], np.uint8), np.zeros([3, 128], np.uint8))


def test_video_level_record_round_trip_with_plain_tf_writer():
    example = tf.train.Example()
    example.features.feature["id"].bytes_list.value.append(b"abc")
    example.features.feature["labels"].int64_list.value.extend([1])
    example.features.feature["mean_rgb"].float_list.value.extend(np.linspace(-1, 1, 1024))
    example.features.feature["mean_audio"].float_list.value.extend(np.zeros(128))
    for record in (example.SerializeToString(), yt8m_video.encode(b"abc", [1], np.linspace(-1, 1, 1024), np.zeros(128))):
        video = yt8m_video.parse(tf.constant(record), num_classes=3)
        assert video["id"].numpy() == b"abc" and video["labels"].numpy().tolist() == [0, 1, 0]
        np.testing.assert_allclose(video["mean_rgb"].numpy(), np.linspace(-1, 1, 1024), atol=1e-6)
