"""Image augmentation of the Cdiscount seed: resize, random crop, flip.

Randomness is stateless and keyed by (seed, position in the stream), so a pipeline
gives the same images whatever its parallelism, and a resumed run the same images
as an uninterrupted one.
"""

import tensorflow as tf

# The seed resized 180 px pictures to 200 before a random 180 crop.
CROP_SCALE = 200 / 180
CROP_PROBABILITY = 0.75
FLIP_PROBABILITY = 0.5


def augment(image: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
    """The seed's training augmentation of one decoded image.

    With probability 0.75: resize to 200/180 of the size and crop a random
    `image_size` square; with probability 0.5: flip horizontally.

    Args:
        image: float32 [image_size, image_size, 3].
        seed: int [2] stateless seed, unique per image of the stream.
        image_size: the output side.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    big = int(round(image_size * CROP_SCALE))

    def crop():
        resized = tf.image.resize(image, [big, big])
        return tf.image.stateless_random_crop(resized, [image_size, image_size, 3], seed=seeds[0])

    crop_it = tf.random.stateless_uniform([], seed=seeds[1]) < CROP_PROBABILITY
    image = tf.cond(crop_it, crop, lambda: image)
    flip_it = tf.random.stateless_uniform([], seed=seeds[2]) < FLIP_PROBABILITY
    image = tf.cond(flip_it, lambda: tf.image.flip_left_right(image), lambda: image)
    return tf.ensure_shape(image, [image_size, image_size, 3])
