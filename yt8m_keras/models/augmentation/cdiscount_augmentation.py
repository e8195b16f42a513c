"""`CdiscountAugmentation`: the Cdiscount seed's training augmentation (resize, random crop, flip)."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image, static_image_size

# The seed resized its 180 px pictures to 200 px before taking a random 180 px crop.
CROP_SCALE = 200 / 180
CROP_PROBABILITY = 0.75
FLIP_PROBABILITY = 0.5


def resized_size(image_size, crop_scale=CROP_SCALE):
    """Side an image is resized to before its random crop: `round(image_size * crop_scale)`."""
    return int(round(image_size * crop_scale))


def crop_at(images, offsets, size):
    """`images[b, y_b : y_b + size, x_b : x_b + size]` for every image `b`, as one gather.

    A gather of flat pixel indices rather than a per-image slice, so every image of the
    batch gets its own offset without a Python loop and the op compiles under XLA.

    Args:
        images: `[B, H, W, C]`.
        offsets: int32 `[B, 2]`, `(y, x)` of each crop's top-left pixel.
        size: the crops' side.
    """
    height, width, channels = static_image_size(images)
    steps = ops.arange(size, dtype="int32")
    rows = ops.expand_dims(offsets[:, 0], 1) + steps  # [B, S]
    cols = ops.expand_dims(offsets[:, 1], 1) + steps
    first_pixel = ops.arange(ops.shape(images)[0], dtype="int32") * (height * width)
    index = (ops.reshape(first_pixel, (-1, 1, 1)) + ops.expand_dims(rows, 2) * width
             + ops.expand_dims(cols, 1))  # [B, S, S]
    return ops.take(ops.reshape(images, (-1, channels)), index, axis=0)


@keras.saving.register_keras_serializable(package="yt8m_keras")
class CdiscountAugmentation(ImageAugmentation):
    """The Cdiscount seed's augmentation, batched: random resized crop and horizontal flip.

    For each image of a batch, independently: with probability `crop_p`, resize it
    (bilinear, half-pixel centres, as `tf.image.resize`) to `round(size * crop_scale)` and
    take a `size x size` crop at a uniformly random offset; then, with probability
    `flip_p`, flip it left-right. With the defaults (200/180, 0.75, 0.5) this is the
    distribution of the stateless per-image `augment` in
    `yt8m_keras/competitions/cdiscount/augment.py`, which test-time augmentation keeps
    using on the host.

    Input: square `[B, S, S, C]` images of a static size, uint8 or float on the 0-255
    scale. Output: float32, same shape. Only `training=True` augments; otherwise the
    output is the input cast to float32. Every draw comes from the layer's
    `SeedGenerator`, a model variable (in `model.variables`, not `model.weights`), so the
    trainer's backups carry it and a resumed run draws the same crops and flips.

    Args:
        crop_p: float in [0, 1], probability that an image is resized and cropped.
        flip_p: float in [0, 1], probability that an image is flipped left-right.
        crop_scale: float >= 1, the resize factor before the crop.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments (`dtype` defaults to float32).

    Example:

    ```python
    import keras
    from yt8m_keras.models.augmentation import CdiscountAugmentation

    images = keras.Input((180, 180, 3))
    x = CdiscountAugmentation(seed=0, name="augmentation")(images)  # augments in fit only
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    ```
    """

    def __init__(self, crop_p=CROP_PROBABILITY, flip_p=FLIP_PROBABILITY, crop_scale=CROP_SCALE, seed=None,
                 **kwargs):
        super().__init__(seed=seed, **kwargs)
        for name, p in (("crop_p", crop_p), ("flip_p", flip_p)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}.")
        if float(crop_scale) < 1.0:
            raise ValueError(f"crop_scale must be >= 1 (the crop is taken from a larger image), got {crop_scale}.")
        self.crop_p = float(crop_p)
        self.flip_p = float(flip_p)
        self.crop_scale = float(crop_scale)

    def augment(self, images):
        size, width, _ = static_image_size(images)
        if size != width:
            raise ValueError(f"CdiscountAugmentation needs square images, got {size}x{width}.")
        big = resized_size(size, self.crop_scale)
        batch_size = ops.shape(images)[0]
        crop = self.uniform(batch_size, 0.0, 1.0) < self.crop_p
        flip = self.uniform(batch_size, 0.0, 1.0) < self.flip_p
        # randint's maxval is exclusive: offsets 0 ... big - size, as tf.image.random_crop.
        offsets = keras.random.randint((batch_size, 2), 0, big - size + 1, dtype="int32",
                                       seed=self.seed_generator)
        resized = ops.image.resize(images, (big, big), interpolation="bilinear", data_format="channels_last")
        images = ops.where(per_image(crop), crop_at(resized, offsets, size), images)
        return ops.where(per_image(flip), ops.flip(images, axis=2), images)

    def get_config(self):
        config = super().get_config()
        config.update(crop_p=self.crop_p, flip_p=self.flip_p, crop_scale=self.crop_scale)
        return config
