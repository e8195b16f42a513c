"""`OpticalDistortion`: random barrel / pincushion lens distortion."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import (
    pixel_grid, remap_bilinear, static_image_size, symmetric_range)


@keras.saving.register_keras_serializable(package="yt8m_keras")
class OpticalDistortion(ImageAugmentation):
    """Warps each image with a radial lens distortion of random strength `k`.

    albumentations' `OpticalDistortion(distort_limit, shift_limit)` (0.4.6): camera matrix
    `fx = width, fy = height, cx = width / 2 + dx, cy = height / 2 + dy`, distortion
    coefficients `(k, k, 0, 0, 0)`, `cv2.initUndistortRectifyMap` (which centres the new
    camera's principal point at `((width - 1) / 2, (height - 1) / 2)`), then `cv2.remap`,
    bilinear, BORDER_REFLECT_101. So output pixel `(j, i)` samples the input at

        x = (j - (width - 1) / 2) / width,  y = (i - (height - 1) / 2) / height,
        r2 = x^2 + y^2,  s = 1 + k r2 + k r2^2,
        (width * x * s + cx, height * y * s + cy).

    `k ~ U(distort_limit)` per image. The principal point shift is drawn in pixels and
    rounded, as albumentations does (`round(U(-0.05, 0.05))`), so at the default
    `shift_limit` it is always 0.

    Args:
        distort_limit: float `l` for `k ~ U(-l, l)`, or a pair.
        shift_limit: float or pair, principal point shift range in pixels (rounded).
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import OpticalDistortion

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    warped = OpticalDistortion(distort_limit=1.0, seed=0)(images, training=True)
    ```
    """

    def __init__(self, distort_limit=0.05, shift_limit=0.05, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.distort_range = symmetric_range(distort_limit, "distort_limit")
        self.shift_range = symmetric_range(shift_limit, "shift_limit")
        self.distort_limit = distort_limit
        self.shift_limit = shift_limit

    def augment(self, images):
        height, width, _ = static_image_size(images)
        batch_size = ops.shape(images)[0]
        k = ops.reshape(self.uniform(batch_size, *self.distort_range), (-1, 1, 1))
        shifts = ops.round(self.uniform(batch_size, *self.shift_range, shape=(2,)))
        cx = ops.reshape(width * 0.5 + shifts[:, 0], (-1, 1, 1))
        cy = ops.reshape(height * 0.5 + shifts[:, 1], (-1, 1, 1))
        grid_x, grid_y = pixel_grid(height, width)
        x = (grid_x - (width - 1) * 0.5) / width
        y = (grid_y - (height - 1) * 0.5) / height
        r2 = x * x + y * y
        scale = 1.0 + k * r2 + k * r2 * r2
        return remap_bilinear(images, width * x * scale + cx, height * y * scale + cy)

    def get_config(self):
        config = super().get_config()
        config.update(distort_limit=self.distort_limit, shift_limit=self.shift_limit)
        return config
