"""`RandomTranspose`: swaps height and width of each image with probability `p`."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image, static_image_size


@keras.saving.register_keras_serializable(package="yt8m_keras")
class RandomTranspose(ImageAugmentation):
    """Transposes each image (swaps its rows and columns) with probability `p`.

    albumentations' `Transpose(p)`: `image.transpose(1, 0, 2)`. With the two flips it
    reaches all 8 symmetries of the square. A batch keeps one shape, so images must be
    square.

    Args:
        p: float in [0, 1], probability that an image is transposed.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import RandomTranspose

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    augmented = RandomTranspose(p=0.5, seed=0)(images, training=True)
    ```
    """

    def __init__(self, p=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}.")
        self.p = float(p)

    def augment(self, images):
        height, width, _ = static_image_size(images)
        if height != width:
            raise ValueError(f"RandomTranspose needs square images, got {height}x{width}.")
        transpose = self.uniform(ops.shape(images)[0], 0.0, 1.0) < self.p
        return ops.where(per_image(transpose), ops.transpose(images, (0, 2, 1, 3)), images)

    def get_config(self):
        config = super().get_config()
        config.update(p=self.p)
        return config
