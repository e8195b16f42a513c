"""`ShiftScaleRotate`: a random translation, scaling and rotation per image."""

import math

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import (
    pixel_grid, remap_bilinear, static_image_size, symmetric_range)


@keras.saving.register_keras_serializable(package="yt8m_keras")
class ShiftScaleRotate(ImageAugmentation):
    """Shifts, scales and rotates each image about its centre, all in one resampling.

    albumentations' `ShiftScaleRotate(shift_limit, scale_limit, rotate_limit,
    border_mode=cv2.BORDER_CONSTANT)` (0.4.6): `angle ~ U(rotate_limit)` degrees
    (counter-clockwise on screen), `scale ~ 1 + U(scale_limit)`, `dx, dy ~ U(shift_limit)`
    (fractions of width and height); forward map `cv2.getRotationMatrix2D((w/2, h/2),
    angle, scale)` with `dx * w, dy * h` added to its translation; `cv2.warpAffine`,
    bilinear, pixels from outside the image are `fill_value` (0: black, the recipe's
    `border_mode=0`).

    Keras' `RandomRotation` + `RandomTranslation` + `RandomZoom` would resample three times
    with three independent draws; `keras.ops.image.affine_transform` has no XLA kernel
    under TensorFlow; so this samples through the inverse map with gathers.

    Args:
        shift_limit: float `l` for shifts ~ U(-l, l) of the side, or a pair.
        scale_limit: float `l` for scale ~ 1 + U(-l, l), or a pair.
        rotate_limit: float `l` for angles ~ U(-l, l) degrees, or a pair.
        fill_value: float, value of pixels mapped from outside the image.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import ShiftScaleRotate

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    moved = ShiftScaleRotate(0.1, 0.1, 15, seed=0)(images, training=True)
    ```
    """

    def __init__(self, shift_limit=0.0625, scale_limit=0.1, rotate_limit=45, fill_value=0.0,
                 seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.shift_range = symmetric_range(shift_limit, "shift_limit")
        self.scale_range = symmetric_range(scale_limit, "scale_limit")
        self.rotate_range = symmetric_range(rotate_limit, "rotate_limit")
        if 1.0 + self.scale_range[0] <= 0:
            raise ValueError(f"scale_limit must keep the scale positive, got {scale_limit!r}.")
        self.shift_limit = shift_limit
        self.scale_limit = scale_limit
        self.rotate_limit = rotate_limit
        self.fill_value = float(fill_value)

    def augment(self, images):
        height, width, _ = static_image_size(images)
        batch_size = ops.shape(images)[0]
        angle = self.uniform(batch_size, *self.rotate_range) * (math.pi / 180.0)
        scale = 1.0 + self.uniform(batch_size, *self.scale_range)
        shift = self.uniform(batch_size, *self.shift_range, shape=(2,))
        # getRotationMatrix2D: [[a, b, (1 - a) cx - b cy], [-b, a, b cx + (1 - a) cy]],
        # a = scale cos, b = scale sin; the shift adds to the last column.
        a = scale * ops.cos(angle)
        b = scale * ops.sin(angle)
        cx, cy = width / 2.0, height / 2.0
        tx = (1.0 - a) * cx - b * cy + shift[:, 0] * width
        ty = b * cx + (1.0 - a) * cy + shift[:, 1] * height
        # Inverse of [[a, b], [-b, a]] is [[a, -b], [b, a]] / (a^2 + b^2).
        norm = a * a + b * b

        def per_batch(value):
            return ops.reshape(value, (-1, 1, 1))

        grid_x, grid_y = pixel_grid(height, width)
        x = grid_x - per_batch(tx)
        y = grid_y - per_batch(ty)
        source_x = (per_batch(a) * x - per_batch(b) * y) / per_batch(norm)
        source_y = (per_batch(b) * x + per_batch(a) * y) / per_batch(norm)
        return remap_bilinear(images, source_x, source_y, border="constant", fill_value=self.fill_value)

    def get_config(self):
        config = super().get_config()
        config.update(
            shift_limit=self.shift_limit,
            scale_limit=self.scale_limit,
            rotate_limit=self.rotate_limit,
            fill_value=self.fill_value,
        )
        return config
