"""`MotionBlur`: convolution with a random line segment kernel per image."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import filter_per_image, odd_kernel_sizes


@keras.saving.register_keras_serializable(package="yt8m_keras")
class MotionBlur(ImageAugmentation):
    """Blurs each image along a random line segment, as a camera shake would.

    albumentations' `MotionBlur(blur_limit)` (0.4.6): a kernel size `k` drawn uniformly
    among the odd numbers of `[3, blur_limit]`; segment ends `xs, xe` uniform in
    `0..k-1`; `ys, ye` uniform too, but distinct when `xs == xe` (so the segment is never
    a single point); the segment is drawn with value 1 on a `k x k` zero kernel, which is
    normalised to sum 1 and applied with `cv2.filter2D` (border BORDER_REFLECT_101).

    The segment is rasterised as `cv2.line` (8-connected Bresenham) does: drawn from its
    left end, one pixel per step along the major axis, the minor coordinate rounded to
    the nearest pixel with ties towards the start (pixel-exact for every segment of a
    5 x 5 kernel).

    Args:
        blur_limit: int, largest kernel size (sizes from 3), or a pair `(low, high)`.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import MotionBlur

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    blurred = MotionBlur(5, seed=0)(images, training=True)
    ```
    """

    def __init__(self, blur_limit=7, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.sizes = odd_kernel_sizes(blur_limit, "blur_limit")
        if min(self.sizes) < 3:
            raise ValueError(f"MotionBlur kernel sizes must be >= 3, got {blur_limit!r}.")
        self.blur_limit = blur_limit

    def kernels(self, batch_size):
        """`[B, K, K]` normalised line kernels, `K = max size`, each centred in the frame."""
        largest = max(self.sizes)
        draws = self.uniform(batch_size, 0.0, 1.0, shape=(6,))
        sizes = ops.convert_to_tensor([float(size) for size in self.sizes])
        size_index = ops.minimum(ops.cast(draws[:, 0] * len(self.sizes), "int32"), len(self.sizes) - 1)
        size = ops.take(sizes, size_index)  # [B] float

        def randint(draw, high):  # uniform integer in [0, high), high a tensor
            return ops.minimum(ops.floor(draw * high), high - 1.0)

        xs, xe = randint(draws[:, 1], size), randint(draws[:, 2], size)
        ys_free, ye_free = randint(draws[:, 3], size), randint(draws[:, 4], size)
        # random.sample(range(k), 2): ys uniform, ye uniform among the other k - 1 values.
        ye_distinct = ops.mod(ys_free + 1.0 + randint(draws[:, 5], size - 1.0), size)
        vertical = ops.equal(xs, xe)
        ys = ys_free
        ye = ops.where(vertical, ye_distinct, ye_free)

        # cv::LineIterator draws left to right: start from the end with the smaller x.
        swap = xs > xe
        xs, xe = ops.where(swap, xe, xs), ops.where(swap, xs, xe)
        ys, ye = ops.where(swap, ye, ys), ops.where(swap, ys, ye)
        steps = ops.maximum(ops.abs(xe - xs), ops.abs(ye - ys))  # points - 1
        denominator = ops.maximum(steps, 1.0)

        def offset_at(point, delta):
            # Bresenham's error term steps the minor axis only past the half-way point.
            return ops.sign(delta) * ops.ceil(ops.abs(point * delta) / denominator - 0.5)

        margin = ops.floor((largest - size) / 2.0)  # centres a smaller kernel in the frame
        cells = ops.arange(largest * largest, dtype="float32")
        kernel = ops.zeros((batch_size, largest * largest))
        for point in range(largest):
            x = xs + offset_at(float(point), xe - xs) + margin
            y = ys + offset_at(float(point), ye - ys) + margin
            hit = ops.equal(cells[None, :], ops.expand_dims(y * largest + x, -1))
            on_segment = ops.less_equal(float(point), steps)  # the segment has steps + 1 points
            kernel = kernel + ops.cast(hit & ops.expand_dims(on_segment, -1), "float32")
        kernel = ops.minimum(kernel, 1.0)
        kernel = kernel / ops.sum(kernel, axis=-1, keepdims=True)
        return ops.reshape(kernel, (batch_size, largest, largest))

    def augment(self, images):
        return filter_per_image(images, self.kernels(ops.shape(images)[0]))

    def get_config(self):
        config = super().get_config()
        config.update(blur_limit=self.blur_limit)
        return config
