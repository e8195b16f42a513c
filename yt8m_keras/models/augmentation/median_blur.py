"""`MedianBlur`: median filter with a random odd aperture per image."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import median_filter, odd_kernel_sizes, per_image


@keras.saving.register_keras_serializable(package="yt8m_keras")
class MedianBlur(ImageAugmentation):
    """Replaces each pixel by the median of its `k x k` window, `k` random per image.

    albumentations' `MedianBlur(blur_limit)` (0.4.6): `k` drawn uniformly among the odd
    numbers of `[3, blur_limit]`, then `cv2.medianBlur(img, k)` per channel, whose border
    is BORDER_REPLICATE. Every candidate size is computed for the batch (elementwise
    min/max of the `k * k` shifted copies through a pruned sorting network: 40 operations
    for 3 x 3, 202 for 5 x 5) and each image keeps its own; cost grows faster than `k^2`,
    so keep `blur_limit` small (5 in the melanoma recipe).

    Args:
        blur_limit: int, largest aperture (apertures from 3), or a pair `(low, high)`.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import MedianBlur

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    smoothed = MedianBlur(5, seed=0)(images, training=True)
    ```
    """

    def __init__(self, blur_limit=7, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.sizes = odd_kernel_sizes(blur_limit, "blur_limit")
        self.blur_limit = blur_limit

    def augment(self, images):
        draw = self.uniform(ops.shape(images)[0], 0.0, 1.0)
        index = ops.minimum(ops.cast(draw * len(self.sizes), "int32"), len(self.sizes) - 1)
        result = images
        for position, size in enumerate(self.sizes):
            result = ops.where(per_image(index == position), median_filter(images, size), result)
        return result

    def get_config(self):
        config = super().get_config()
        config.update(blur_limit=self.blur_limit)
        return config
