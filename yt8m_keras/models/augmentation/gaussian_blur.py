"""`GaussianBlur`: OpenCV's Gaussian blur with a random odd kernel size per image."""

import numpy as np
import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import filter_per_image, odd_kernel_sizes, select_kernels

# cv::getGaussianKernel's fixed kernels for odd sizes <= 7 when sigma <= 0 (the binomial
# rows); albumentations 0.4.6 calls cv2.GaussianBlur(img, (k, k), sigmaX=0).
_SMALL_GAUSSIAN = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
}


def opencv_gaussian_kernel_1d(size):
    """`cv2.getGaussianKernel(size, 0)`: the table above, or sigma = 0.3((size-1)/2 - 1) + 0.8."""
    if size in _SMALL_GAUSSIAN:
        return np.array(_SMALL_GAUSSIAN[size])
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-offsets ** 2 / (2 * sigma * sigma))
    return kernel / kernel.sum()


@keras.saving.register_keras_serializable(package="yt8m_keras")
class GaussianBlur(ImageAugmentation):
    """Blurs each image with an OpenCV Gaussian kernel of a random odd size.

    albumentations' `GaussianBlur(blur_limit)` (0.4.6): the size is drawn uniformly among
    the odd numbers of `[3, blur_limit]`, and `cv2.GaussianBlur(img, (k, k), sigmaX=0)`
    derives sigma from it (fixed binomial kernels up to 7), border BORDER_REFLECT_101.
    `keras.layers.RandomGaussianBlur` instead fixes the size and draws sigma.

    Args:
        blur_limit: int, largest kernel size (sizes from 3), or a pair `(low, high)`.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import GaussianBlur

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    blurred = GaussianBlur(5, seed=0)(images, training=True)  # 3x3 or 5x5 per image
    ```
    """

    def __init__(self, blur_limit=7, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.sizes = odd_kernel_sizes(blur_limit, "blur_limit")
        self.blur_limit = blur_limit
        largest = max(self.sizes)
        bank = np.zeros((len(self.sizes), largest, largest))
        for index, size in enumerate(self.sizes):
            start = (largest - size) // 2
            row = opencv_gaussian_kernel_1d(size)
            bank[index, start:start + size, start:start + size] = np.outer(row, row)
        self.kernel_bank = bank

    def augment(self, images):
        draw = self.uniform(ops.shape(images)[0], 0.0, 1.0)
        index = ops.minimum(ops.cast(draw * len(self.sizes), "int32"), len(self.sizes) - 1)
        return filter_per_image(images, select_kernels(self.kernel_bank, index))

    def get_config(self):
        config = super().get_config()
        config.update(blur_limit=self.blur_limit)
        return config
