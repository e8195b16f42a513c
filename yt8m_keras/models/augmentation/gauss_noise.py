"""`GaussNoise`: additive Gaussian noise with a random variance per image."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image, range_from


@keras.saving.register_keras_serializable(package="yt8m_keras")
class GaussNoise(ImageAugmentation):
    """Adds `N(mean, var)` noise to every pixel and channel, `var ~ U(var_limit)` per image.

    albumentations' `GaussNoise(var_limit, mean)` (0.4.6): one variance per image, on the
    0-255 scale, independent noise per pixel and channel, result clipped. Unlike
    `keras.layers.GaussianNoise`, the standard deviation is random per image and the
    output stays in [0, 255].

    Args:
        var_limit: pair `(low, high)` of variances (0-255 scale), or a number `v` for
            `(0, v)`.
        mean: float, mean of the noise.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import GaussNoise

    images = np.full((4, 32, 32, 3), 128.0, "float32")
    noisy = GaussNoise((5.0, 30.0), seed=0)(images, training=True)
    ```
    """

    def __init__(self, var_limit=(10.0, 50.0), mean=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.range = range_from(var_limit, 0.0, "var_limit")
        if self.range[0] < 0:
            raise ValueError(f"var_limit must be non-negative, got {var_limit!r}.")
        self.var_limit = var_limit
        self.mean = float(mean)

    def augment(self, images):
        variance = self.uniform(ops.shape(images)[0], *self.range)
        noise = keras.random.normal(ops.shape(images), seed=self.seed_generator)
        return images + noise * per_image(ops.sqrt(variance)) + self.mean

    def get_config(self):
        config = super().get_config()
        config.update(var_limit=self.var_limit, mean=self.mean)
        return config
