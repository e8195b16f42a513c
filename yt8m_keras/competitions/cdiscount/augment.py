"""The Cdiscount seed's augmentation of one image, stateless: what test-time augmentation uses.

Training no longer calls this: the same distribution runs batched at the model's front
(`yt8m_keras.models.augmentation.CdiscountAugmentation`, wired in by `task.build_model`),
so the host only decodes. This per-image version stays for test-time augmentation
(`predict.py`), where each copy must be a function of (seed, image, copy) alone. The
numbers are declared here and the task builds the layer with them, so the two cannot
drift apart. TensorFlow only, no Keras: Beam's batch-inference workers run this.

Randomness is stateless and keyed by the caller's seed, so a pipeline gives the same
images whatever its parallelism.
"""

import tensorflow as tf

# The seed resized its 180 px pictures to 200 px before taking a random 180 px crop.
CROP_SCALE = 200 / 180
CROP_PROBABILITY = 0.75
FLIP_PROBABILITY = 0.5


def augment(image: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
    """The seed's augmentation of one decoded image: `CdiscountAugmentation`'s distribution.

    With probability 0.75: resize to round(200/180 of the size) and crop a random
    `image_size` square; with probability 0.5: flip horizontally.

    Args:
        image: float32 [image_size, image_size, 3].
        seed: int [2] stateless seed, unique per image (and test-time copy).
        image_size: the output side.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    big = int(round(image_size * CROP_SCALE))  # as CdiscountAugmentation's resize

    def crop():
        resized = tf.image.resize(image, [big, big])
        return tf.image.stateless_random_crop(resized, [image_size, image_size, 3], seed=seeds[0])

    crop_it = tf.random.stateless_uniform([], seed=seeds[1]) < CROP_PROBABILITY
    image = tf.cond(crop_it, crop, lambda: image)
    flip_it = tf.random.stateless_uniform([], seed=seeds[2]) < FLIP_PROBABILITY
    image = tf.cond(flip_it, lambda: tf.image.flip_left_right(image), lambda: image)
    return tf.ensure_shape(image, [image_size, image_size, 3])
