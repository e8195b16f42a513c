"""`GridDistortion`: stretches or squeezes the cells of a random grid."""

import numpy as np
import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import remap_bilinear, static_image_size, symmetric_range


def _segments(size, num_steps):
    """albumentations' grid segments along one axis (NumPy, static).

    Segment `idx` covers pixels `[idx * step, min(idx * step + step, size))` with
    `step = size // num_steps`; the last one, where `idx * step + step > size`, ends at
    `size` and maps to `size` rather than to a random length. Returns, per pixel, its
    segment and its fraction along the segment (`np.linspace` spacing), and per segment
    whether it is that clamped last one.
    """
    step = size // num_steps
    segment = np.zeros(size, "int32")
    fraction = np.zeros(size, "float32")
    clamped = []
    for idx in range(num_steps + 1):
        start = idx * step
        end = start + step
        clamped.append(end > size)
        end = min(end, size)
        count = end - start
        if count > 0:
            segment[start:end] = idx
            fraction[start:end] = np.arange(count) / max(count - 1, 1)
    return step, segment, fraction, clamped


def _distorted_coordinates(stretches, size, num_steps):
    """Source coordinate of each pixel along one axis: `[B, size]`."""
    step, segment, fraction, clamped = _segments(size, num_steps)
    starts, ends = [], []
    previous = ops.zeros_like(stretches[:, 0])
    for idx in range(num_steps + 1):
        current = ops.full_like(previous, float(size)) if clamped[idx] else previous + step * stretches[:, idx]
        starts.append(previous)
        ends.append(current)
        previous = current
    starts = ops.take(ops.stack(starts, axis=1), segment, axis=1)
    ends = ops.take(ops.stack(ends, axis=1), segment, axis=1)
    return starts + (ends - starts) * fraction[None, :]


@keras.saving.register_keras_serializable(package="yt8m_keras")
class GridDistortion(ImageAugmentation):
    """Warps each image by giving the cells of a `num_steps` grid random sizes.

    albumentations' `GridDistortion(num_steps, distort_limit)` (0.4.6): along each axis,
    cell `idx` of `step = size // num_steps` pixels is resampled from a source stretch of
    `step * (1 + u_idx)` pixels, `u_idx ~ U(distort_limit)` (the source positions are
    linear within a cell, `np.linspace`), for `num_steps + 1` cells; then `cv2.remap`,
    bilinear, BORDER_REFLECT_101. The mapping is separable (columns and rows
    independently).

    Args:
        num_steps: int >= 1, grid cells per side.
        distort_limit: float `l` for `u ~ U(-l, l)`, or a pair.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import GridDistortion

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    warped = GridDistortion(num_steps=5, distort_limit=1.0, seed=0)(images, training=True)
    ```
    """

    def __init__(self, num_steps=5, distort_limit=0.3, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be at least 1, got {num_steps}.")
        self.num_steps = int(num_steps)
        self.distort_range = symmetric_range(distort_limit, "distort_limit")
        self.distort_limit = distort_limit

    def augment(self, images):
        height, width, _ = static_image_size(images)
        if min(height, width) < self.num_steps:
            raise ValueError(f"GridDistortion needs images of at least num_steps={self.num_steps} pixels.")
        batch_size = ops.shape(images)[0]
        stretches = 1.0 + self.uniform(batch_size, *self.distort_range, shape=(2, self.num_steps + 1))
        xx = _distorted_coordinates(stretches[:, 0], width, self.num_steps)  # [B, W]
        yy = _distorted_coordinates(stretches[:, 1], height, self.num_steps)  # [B, H]
        map_x = ops.broadcast_to(xx[:, None, :], (batch_size, height, width))
        map_y = ops.broadcast_to(yy[:, :, None], (batch_size, height, width))
        return remap_bilinear(images, map_x, map_y)

    def get_config(self):
        config = super().get_config()
        config.update(num_steps=self.num_steps, distort_limit=self.distort_limit)
        return config
