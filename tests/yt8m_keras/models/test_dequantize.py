import keras
import numpy as np
import pytest
import tensorflow as tf
from video_samples import random_videos

from tfrecords import yt8m_frame
from yt8m_keras.models.dbof import build_dbof_video_model, build_gated_dbof_video_model
from yt8m_keras.models.dequantize import Dequantize
from yt8m_keras.models.nextvlad import build_nextvlad_video_model


def test_layer_equals_the_record_kinds_dequantize_on_all_256_values():
    levels = np.arange(256, dtype=np.uint8).reshape(1, 256, 1)
    expected = yt8m_frame.dequantize(tf.constant(levels)).numpy()
    out = np.asarray(Dequantize()(levels))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    # Any integer dtype is taken as quantized levels.
    np.testing.assert_array_equal(np.asarray(Dequantize()(levels.astype(np.int32))), expected)


def test_masked_frames_come_out_exactly_zero_and_real_frames_dequantized():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 5, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (2, 5, 128), dtype=np.uint8)
    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)
    rgb[mask == 0] = 0  # zero padding, as the pipeline gives it; 0 alone would be -2 + 4/512
    out_rgb, out_audio = Dequantize()([rgb, audio], mask)
    for out, frames in ((np.asarray(out_rgb), rgb), (np.asarray(out_audio), audio)):
        assert not out[mask == 0].any()
        np.testing.assert_array_equal(out[mask == 1], yt8m_frame.dequantize(frames[mask == 1]).numpy())
    # Without a mask every frame is dequantized, padding included.
    np.testing.assert_allclose(np.asarray(Dequantize()(rgb))[0, 4], yt8m_frame.BIAS)


def test_float_input_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="quantize_tensor"):
        Dequantize()(np.zeros((1, 2, 3), np.float32))


def test_config_round_trip_and_float32_output_under_mixed_precision():
    layer = Dequantize(name="dequantize")
    clone = Dequantize.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.name == "dequantize"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = Dequantize()
    finally:
        keras.config.set_dtype_policy(previous)
    assert np.asarray(mixed(np.full((1, 1, 2), 255, np.uint8))).dtype == np.float32


@pytest.mark.parametrize("builder,kwargs", [
    (build_nextvlad_video_model, dict(cluster_size=4, groups=2, expansion=1, hidden_size=8, num_frames=4)),
    (build_dbof_video_model, dict(cluster_size=8, hidden_size=8, num_frames=4)),
    (build_gated_dbof_video_model, dict(cluster_size=8, hidden_size=8)),
])
def test_video_models_take_uint8_and_dequantize_first(builder, kwargs):
    model = builder(num_classes=3, **kwargs)
    dtypes = {name: tensor.dtype for name, tensor in model.input.items()}
    assert dtypes == {"rgb": "uint8", "audio": "uint8", "mask": "float32"}
    dequantize = model.get_layer("dequantize")
    assert isinstance(dequantize, Dequantize)
    # The first layer after the inputs, and the only one that reads the frames.
    assert [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)][0] is dequantize
    frame_inputs = {id(model.input["rgb"]), id(model.input["audio"])}
    readers = [layer.name for layer in model.layers for node in layer._inbound_nodes
               if frame_inputs & {id(t) for t in node.input_tensors}]
    assert readers == ["dequantize"]
    videos = random_videos([6, 2], max_frames=6)
    assert videos["rgb"].dtype == np.uint8
    assert np.asarray(model(videos, training=False)).shape == (2, 3)
