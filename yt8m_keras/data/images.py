"""Image decoding shared by every image competition's input, serving and conversion checks."""

import tensorflow as tf


def decode(jpeg: tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG bytes -> float32 [image_size, image_size, 3] pixels in [0, 255]."""
    image = tf.io.decode_jpeg(jpeg, channels=3)
    image = tf.image.resize(image, [image_size, image_size])
    return tf.ensure_shape(image, [image_size, image_size, 3])
