"""`CLAHE`: OpenCV's contrast limited adaptive histogram equalisation of the L channel."""

import numpy as np
import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import (
    border_indices, lab_to_rgb, range_from, rgb_to_lab, static_image_size)

_BINS = 256


def _interpolation_plan(size, tiles, tile_size):
    """cv::CLAHE's bilinear blending along one axis (NumPy, static): per pixel, the two
    neighbouring tiles and the weight of the second, from `t = i / tile_size - 0.5`."""
    position = np.arange(size, dtype="float32") * np.float32(1.0 / tile_size) - np.float32(0.5)
    first = np.floor(position)
    weight = (position - first).astype("float32")
    second = np.minimum(first + 1, tiles - 1).astype("int32")
    first = np.maximum(first, 0).astype("int32")
    return first, second, weight


def clahe_lightness(lightness, clip_limit, tile_grid_size):
    """`cv2.createCLAHE(clip_limit, tile_grid_size).apply` for a batch of 8-bit planes.

    Args:
        lightness: `[B, H, W]` float32 holding integers in [0, 255].
        clip_limit: `[B]` float32, one clip limit per image.
        tile_grid_size: `(rows, cols)` of tiles.

    Follows OpenCV's clahe.cpp step by step: pad to a multiple of the grid with
    BORDER_REFLECT_101; per tile, a 256-bin histogram; clip each bin at
    `max(int(clip_limit * tile_area / 256), 1)`, give the clipped count back evenly
    (`clipped // 256` to every bin, the remainder one each to bins `0, step, 2 step, ...`
    with `step = max(256 // remainder, 1)`); the lookup table is the rounded, saturated
    `cumsum * 255 / tile_area`; each pixel blends the tables of its four nearest tile
    centres bilinearly (tables beyond the grid clamp to the edge tiles), rounded.
    """
    height, width = lightness.shape[1], lightness.shape[2]
    tiles_y, tiles_x = tile_grid_size
    padded_h = height if height % tiles_y == 0 else height + tiles_y - height % tiles_y
    padded_w = width if width % tiles_x == 0 else width + tiles_x - width % tiles_x
    tile_h, tile_w = padded_h // tiles_y, padded_w // tiles_x
    tile_area = tile_h * tile_w
    num_tiles = tiles_y * tiles_x
    batch_size = ops.shape(lightness)[0]
    values = ops.cast(lightness, "int32")

    # Histograms of the padded plane: one segment per (image, tile, bin).
    rows = np.concatenate([np.arange(height), _reflected_tail(height, padded_h - height)])
    cols = np.concatenate([np.arange(width), _reflected_tail(width, padded_w - width)])
    padded = ops.take(ops.take(values, rows, axis=1), cols, axis=2)  # [B, Hp, Wp]
    tile_of_pixel = (np.arange(padded_h)[:, None] // tile_h) * tiles_x + np.arange(padded_w)[None, :] // tile_w
    image_offset = ops.reshape(ops.arange(batch_size, dtype="int32") * (num_tiles * _BINS), (-1, 1, 1))
    segment = image_offset + ops.convert_to_tensor((tile_of_pixel * _BINS).astype("int32"))[None] + padded
    counts = ops.segment_sum(
        ops.ones((batch_size * padded_h * padded_w,), "int32"),
        ops.reshape(segment, (-1,)),
        num_segments=batch_size * num_tiles * _BINS,
    )
    histograms = ops.reshape(counts, (-1, num_tiles, _BINS))

    # Clip and redistribute, in integers as OpenCV does.
    limit = ops.maximum(ops.cast(ops.floor(clip_limit * (tile_area / _BINS)), "int32"), 1)
    limit = ops.reshape(limit, (-1, 1, 1))
    clipped = ops.sum(ops.maximum(histograms - limit, 0), axis=-1, keepdims=True)
    batch_share = ops.floor_divide(clipped, _BINS)
    histograms = ops.minimum(histograms, limit) + batch_share
    residual = clipped - batch_share * _BINS
    step = ops.maximum(ops.floor_divide(_BINS, ops.maximum(residual, 1)), 1)
    bins = ops.arange(_BINS, dtype="int32")[None, None, :]
    gets_one = (residual > 0) & (ops.mod(bins, step) == 0) & (ops.floor_divide(bins, step) < residual)
    histograms = histograms + ops.cast(gets_one, "int32")

    # Lookup tables, saturate_cast<uchar>(cumsum * (255 / area)) (round half to even).
    lut_scale = np.float32(255.0 / tile_area)
    luts = ops.clip(ops.round(ops.cast(ops.cumsum(histograms, axis=-1), "float32") * lut_scale), 0, 255)
    luts = ops.reshape(luts, (-1,))

    # Bilinear blending of the four neighbouring tiles' tables, for the unpadded pixels.
    y1, y2, wy = _interpolation_plan(height, tiles_y, tile_h)
    x1, x2, wx = _interpolation_plan(width, tiles_x, tile_w)

    def table(tile_rows, tile_cols):
        tile = (tile_rows[:, None] * tiles_x + tile_cols[None, :]) * _BINS
        return ops.take(luts, image_offset + ops.convert_to_tensor(tile.astype("int32"))[None] + values)

    wx = ops.convert_to_tensor(wx)[None, None, :]
    wy = ops.convert_to_tensor(wy)[None, :, None]
    top = table(y1, x1) * (1.0 - wx) + table(y1, x2) * wx
    bottom = table(y2, x1) * (1.0 - wx) + table(y2, x2) * wx
    return ops.clip(ops.round(top * (1.0 - wy) + bottom * wy), 0, 255)


def _reflected_tail(size, extra):
    """Indices of the `extra` rows BORDER_REFLECT_101 appends after `size` rows."""
    return border_indices(size, extra, "reflect101")[extra + size:]


@keras.saving.register_keras_serializable(package="yt8m_keras")
class CLAHE(ImageAugmentation):
    """Contrast limited adaptive histogram equalisation of each image's lightness.

    albumentations' `CLAHE(clip_limit, tile_grid_size)` (0.4.6): the clip limit is drawn
    per image from `U(1, clip_limit)` (a number `c` means the range `(1, c)`); the image
    goes to OpenCV's 8-bit Lab, `cv2.createCLAHE(clip, tile_grid_size).apply` equalises
    `L`, and the image goes back to RGB. The equalisation follows OpenCV's integer
    algorithm exactly (see `clahe_lightness`); the colour conversions are OpenCV's
    formulas in float32 (sRGB curve, D65), with `L` rounded to integers as 8-bit Lab does
    and `a`, `b` left unrounded, so results can differ from OpenCV's by a level or so.

    `keras.layers.ContrastLimitedAdaptiveHistogramEqualization` is not used: it equalises
    R, G and B separately (shifting hues), with a fixed clip limit, a different lookup
    table (`cdf - cdf_min`), and histograms by one-hot encoding, which needs
    `256 x` the image's memory. Here histograms are one `segment_sum`.

    Args:
        clip_limit: float `c` for a limit ~ U(1, c) per image, or a pair `(low, high)`.
        tile_grid_size: pair of ints, tiles per column and per row.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import CLAHE

    images = np.random.uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    equalised = CLAHE(clip_limit=4.0, seed=0)(images, training=True)
    ```
    """

    def __init__(self, clip_limit=4.0, tile_grid_size=(8, 8), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.clip_range = range_from(clip_limit, 1.0, "clip_limit")
        if len(tile_grid_size) != 2 or min(int(size) for size in tile_grid_size) < 1:
            raise ValueError(f"tile_grid_size must be two positive ints, got {tile_grid_size!r}.")
        self.clip_limit = clip_limit
        self.tile_grid_size = (int(tile_grid_size[0]), int(tile_grid_size[1]))

    def augment(self, images):
        height, width, channels = static_image_size(images)
        if channels != 3:
            raise ValueError(f"CLAHE needs RGB images, got {channels} channels.")
        if height < self.tile_grid_size[0] or width < self.tile_grid_size[1]:
            raise ValueError(f"CLAHE needs at least one pixel per tile, got {height}x{width}.")
        clip_limit = self.uniform(ops.shape(images)[0], *self.clip_range)
        lightness, a, b = rgb_to_lab(images)
        lightness = ops.clip(ops.round(lightness), 0.0, 255.0)
        lightness = clahe_lightness(lightness, clip_limit, self.tile_grid_size)
        return lab_to_rgb(lightness, a, b)

    def get_config(self):
        config = super().get_config()
        config.update(clip_limit=self.clip_limit, tile_grid_size=self.tile_grid_size)
        return config
