"""`ElasticTransform`: albumentations' random affine warp plus a smooth displacement field."""

import functools
import math

import numpy as np
import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import pixel_grid, remap_bilinear, static_image_size


def _gaussian_taps(sigma):
    """scipy.ndimage.gaussian_filter1d's kernel: radius int(4 sigma + 0.5), normalised."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _smoothing_matrix(size, sigma):
    """`[size, size]` matrix of a 1-D Gaussian filter with scipy's default 'reflect' border
    (`dcba|abcd|dcba`)."""
    taps = _gaussian_taps(sigma)
    radius = len(taps) // 2
    matrix = np.zeros((size, size))
    for i in range(size):
        for offset, tap in zip(range(-radius, radius + 1), taps):
            j = i + offset
            # Reflect (half-sample symmetric) until inside; handles kernels wider than the axis.
            while j < 0 or j >= size:
                j = -j - 1 if j < 0 else 2 * size - j - 1
            matrix[i, j] += tap
    return matrix


def _upsampling_matrix(size, coarse_size, step):
    """`[size, coarse_size]` linear interpolation from grid points at `0, step, 2 step, ...`."""
    position = np.arange(size) / step
    low = np.minimum(np.floor(position).astype(int), coarse_size - 1)
    high = np.minimum(low + 1, coarse_size - 1)
    weight = position - low
    matrix = np.zeros((size, coarse_size))
    matrix[np.arange(size), low] += 1.0 - weight
    matrix[np.arange(size), high] += weight
    return matrix


@functools.lru_cache(maxsize=32)
def displacement_operators(size, sigma):
    """`(operator [size, coarse], coarse)`: maps coarse uniform noise to a field distributed
    like `gaussian_filter(U(-1, 1) noise at full size, sigma)`.

    Smoothing full-size noise with sigma ~ 50 px costs a 401-tap filter per pixel. The
    smoothed field varies over tens of pixels, so it is drawn on a grid `step =
    max(1, int(sigma / 8))` times coarser, smoothed there with sigma / step, interpolated
    back, and rescaled so its standard deviation matches the full-size field's
    (`sum(taps^2)` is the variance gain of a filter on white noise).
    """
    step = max(1, int(sigma / 8.0))
    coarse = (size - 1) // step + 1
    if step > 1 and coarse < 2:
        step, coarse = 1, size
    coarse_sigma = sigma / step
    gain = math.sqrt(np.sum(_gaussian_taps(sigma) ** 2) / np.sum(_gaussian_taps(coarse_sigma) ** 2))
    operator = _upsampling_matrix(size, coarse, step) @ _smoothing_matrix(coarse, coarse_sigma) * gain
    return operator.astype("float32"), coarse


@keras.saving.register_keras_serializable(package="yt8m_keras")
class ElasticTransform(ImageAugmentation):
    """albumentations' `ElasticTransform(alpha, sigma, alpha_affine)` (0.4.6), batched.

    albumentations first warps the image with a random affine map: the three points
    `c + (s, s)`, `c + (s, -s)`, `c - (s, s)`, with `c = (height // 2, width // 2)` (used
    as (x, y), as albumentations does) and `s = min(height, width) // 3`, each move by
    `U(-alpha_affine, alpha_affine)` pixels per coordinate (`cv2.getAffineTransform`,
    `cv2.warpAffine`); then it samples the warped image at `(x + dx, y + dy)`, where `dx`,
    `dy` are `alpha * gaussian_filter(U(-1, 1) noise, sigma)`. Both use bilinear
    interpolation and BORDER_REFLECT_101.

    Here both steps are one resampling: output `(x, y)` reads the input at
    `A^-1 ((x + dx, y + dy) - t)` (less blur than two bilinear passes; only the borders
    of the intermediate image are handled differently). The displacement field is drawn
    on a coarser grid (see `displacement_operators`); with the melanoma recipe's
    `alpha=3, sigma=50` its standard deviation is about 0.01 px, so the affine part is
    what shows. Note the affine magnitude is in pixels, not relative to the image size.

    Args:
        alpha: float, scale of the displacement field (pixels).
        sigma: float > 0, smoothness of the displacement field (pixels).
        alpha_affine: float, range of the affine point moves (pixels).
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import ElasticTransform

    images = np.random.uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    warped = ElasticTransform(alpha=3, sigma=50, alpha_affine=10, seed=0)(images, training=True)
    ```
    """

    def __init__(self, alpha=1.0, sigma=50.0, alpha_affine=50.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if float(sigma) <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}.")
        self.alpha = float(alpha)
        self.sigma = float(sigma)
        self.alpha_affine = float(alpha_affine)

    def augment(self, images):
        height, width, _ = static_image_size(images)
        batch_size = ops.shape(images)[0]

        # Random affine: M maps the three source points onto the moved ones.
        center_x, center_y = float(height // 2), float(width // 2)
        side = float(min(height, width) // 3)
        source = np.array([[center_x + side, center_y + side],
                           [center_x + side, center_y - side],
                           [center_x - side, center_y - side]], "float64")
        # [x', y'] = [x, y, 1] @ solve([[x, y, 1] rows], moved): one 3x3 inverse, static.
        inverse = np.linalg.inv(np.concatenate([source, np.ones((3, 1))], axis=1)).astype("float32")
        moves = self.uniform(batch_size, -self.alpha_affine, self.alpha_affine, shape=(3, 2))
        moved = ops.convert_to_tensor(source.astype("float32"))[None] + moves  # [B, 3, 2]
        affine = ops.matmul(ops.convert_to_tensor(inverse)[None], moved)  # [B, 3, 2]: rows a, b, t
        a11, a21 = affine[:, 0, 0], affine[:, 0, 1]
        a12, a22 = affine[:, 1, 0], affine[:, 1, 1]
        tx, ty = affine[:, 2, 0], affine[:, 2, 1]
        determinant = a11 * a22 - a12 * a21
        # A degenerate draw (possible only when alpha_affine is large for the image) would
        # divide by ~0; keep the sign and bound the size.
        determinant = ops.where(ops.abs(determinant) < 1e-6,
                                ops.where(determinant < 0, -1e-6, 1e-6), determinant)

        # Smooth displacement field, [B, H, W] each for x and y.
        operator_h, coarse_h = displacement_operators(height, self.sigma)
        operator_w, coarse_w = displacement_operators(width, self.sigma)
        noise = self.uniform(batch_size, -1.0, 1.0, shape=(2, coarse_h, coarse_w))
        field = ops.matmul(ops.matmul(ops.convert_to_tensor(operator_h)[None, None], noise),
                           ops.convert_to_tensor(operator_w.T)[None, None]) * self.alpha
        grid_x, grid_y = pixel_grid(height, width)
        x = grid_x + field[:, 0] - ops.reshape(tx, (-1, 1, 1))
        y = grid_y + field[:, 1] - ops.reshape(ty, (-1, 1, 1))

        def per_batch(value):
            return ops.reshape(value / determinant, (-1, 1, 1))

        source_x = per_batch(a22) * x - per_batch(a12) * y
        source_y = -per_batch(a21) * x + per_batch(a11) * y
        return remap_bilinear(images, source_x, source_y)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, sigma=self.sigma, alpha_affine=self.alpha_affine)
        return config
