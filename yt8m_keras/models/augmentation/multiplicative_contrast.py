"""`MultiplicativeContrast`: albumentations' `RandomContrast`, which multiplies pixel values."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image, symmetric_range


@keras.saving.register_keras_serializable(package="yt8m_keras")
class MultiplicativeContrast(ImageAugmentation):
    """Multiplies each image by `1 + u`, `u ~ U(limit)`, and clips to [0, 255].

    This is albumentations' `RandomContrast(limit)` (0.4.6,
    `brightness_contrast_adjust(img, alpha=1 + u)`: `img * alpha`, clipped), which scales
    around 0, unlike `keras.layers.RandomContrast`, which scales around each image's mean.
    Kept as albumentations does it, since the melanoma recipe was tuned with it.

    Args:
        limit: float `l` for `u ~ U(-l, l)`, or a pair `(low, high)`.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import MultiplicativeContrast

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    augmented = MultiplicativeContrast(0.2, seed=0)(images, training=True)
    ```
    """

    def __init__(self, limit=0.2, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.range = symmetric_range(limit, "limit")
        self.limit = limit

    def augment(self, images):
        alpha = 1.0 + self.uniform(ops.shape(images)[0], *self.range)
        return images * per_image(alpha)

    def get_config(self):
        config = super().get_config()
        config.update(limit=self.limit)
        return config
