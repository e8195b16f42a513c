"""Batched image operations shared by the augmentation layers, written with `keras.ops` only.

Conventions (OpenCV's, since the transforms reproduce albumentations 0.4.6, which calls
OpenCV): images are `[batch, height, width, channels]` float32 on the 0-255 scale; pixel
centres sit at integer coordinates; `x` is the column and `y` the row.

Everything here is XLA-friendly (static shapes apart from the batch, gathers rather than
`ImageProjectiveTransform`, which has no XLA kernel), so the layers run on TPUs and under
`jit_compile=True`, and has a JAX equivalent for every op.
"""

import functools

import numpy as np
from keras import ops


def static_image_size(images):
    """`(height, width, channels)` as Python ints; the layers need them at trace time."""
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    if height is None or width is None or channels is None:
        raise ValueError(
            "Augmentation layers need static height, width and channels; got image shape "
            f"{tuple(images.shape)}. Give the model input a fixed image size."
        )
    return int(height), int(width), int(channels)


def symmetric_range(limit, name):
    """albumentations' `to_tuple(limit)`: a number `l` means `(-l, l)`, a pair is kept."""
    if isinstance(limit, (tuple, list)):
        if len(limit) != 2:
            raise ValueError(f"{name} must be a number or a pair, got {limit!r}.")
        low, high = float(limit[0]), float(limit[1])
    else:
        low, high = -abs(float(limit)), abs(float(limit))
    if low > high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {limit!r}.")
    return low, high


def range_from(limit, low, name):
    """albumentations' `to_tuple(limit, low)`: a number `l` means `(low, l)`, a pair is kept."""
    if isinstance(limit, (tuple, list)):
        if len(limit) != 2:
            raise ValueError(f"{name} must be a number or a pair, got {limit!r}.")
        bounds = float(limit[0]), float(limit[1])
    else:
        bounds = float(low), float(limit)
    if bounds[0] > bounds[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {limit!r}.")
    return bounds


def odd_kernel_sizes(blur_limit, name):
    """The odd kernel sizes albumentations' blurs choose among: `range(low, high + 1, 2)`."""
    low, high = range_from(blur_limit, 3, name)
    sizes = list(range(int(low), int(high) + 1, 2))
    if not sizes or any(size < 1 or size % 2 == 0 for size in sizes):
        raise ValueError(f"{name} must give odd kernel sizes >= 1, got {blur_limit!r}.")
    return sizes


def per_image(mask):
    """A `[batch]` tensor reshaped to broadcast over `[batch, height, width, channels]`."""
    return ops.reshape(mask, (-1, 1, 1, 1))


# --- Borders --------------------------------------------------------------------------------


def border_indices(size, pad, border):
    """Source index of each position of `range(-pad, size + pad)` (NumPy, static).

    `reflect101` is OpenCV's BORDER_REFLECT_101 (`gfedcb|abcdefgh|gfedcba`, its default for
    filters and warps); `replicate` is BORDER_REPLICATE (`aaaaaa|abcdefgh|hhhhhhh`, used by
    `cv2.medianBlur`).
    """
    positions = np.arange(-pad, size + pad)
    if border == "replicate" or size == 1:
        return np.clip(positions, 0, size - 1).astype("int32")
    if border == "reflect101":
        period = 2 * (size - 1)
        positions = np.abs(positions) % period
        return np.where(positions >= size, period - positions, positions).astype("int32")
    raise ValueError(f"Unknown border {border!r}.")


def pad_images(images, pad, border):
    """Pads height and width by `pad` on each side, by gathering rows and columns."""
    height, width, _ = static_image_size(images)
    images = ops.take(images, border_indices(height, pad, border), axis=1)
    return ops.take(images, border_indices(width, pad, border), axis=2)


def _reflect101(index, size):
    """BORDER_REFLECT_101 of integer tensor coordinates (any distance from the image)."""
    if size == 1:
        return ops.zeros_like(index)
    period = 2 * (size - 1)
    index = ops.mod(ops.abs(index), period)
    return ops.where(index >= size, period - index, index)


# --- Resampling -----------------------------------------------------------------------------


def remap_bilinear(images, map_x, map_y, border="reflect101", fill_value=0.0):
    """`cv2.remap(images, map_x, map_y, INTER_LINEAR, border)` for a batch.

    Args:
        images: `[B, H, W, C]` float32.
        map_x, map_y: `[B, H, W]` source coordinates of each output pixel.
        border: `"reflect101"` or `"constant"` (every out-of-image neighbour counts as
            `fill_value`, as OpenCV's BORDER_CONSTANT does).
    """
    height, width, channels = static_image_size(images)
    # Degenerate random warps can send coordinates very far; clamp before the int cast
    # (any clamped point is far outside the image either way).
    limit = float(8 * max(height, width))
    map_x = ops.clip(map_x, -limit, limit)
    map_y = ops.clip(map_y, -limit, limit)
    x0f = ops.floor(map_x)
    y0f = ops.floor(map_y)
    wx = ops.expand_dims(map_x - x0f, -1)
    wy = ops.expand_dims(map_y - y0f, -1)
    x0 = ops.cast(x0f, "int32")
    y0 = ops.cast(y0f, "int32")
    flat = ops.reshape(images, (-1, channels))
    offsets = ops.reshape(ops.arange(ops.shape(images)[0], dtype="int32") * (height * width), (-1, 1, 1))

    def corner(y, x):
        if border == "reflect101":
            y, x = _reflect101(y, height), _reflect101(x, width)
            return ops.take(flat, offsets + y * width + x, axis=0)
        if border != "constant":
            raise ValueError(f"Unknown border {border!r}.")
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        y, x = ops.clip(y, 0, height - 1), ops.clip(x, 0, width - 1)
        values = ops.take(flat, offsets + y * width + x, axis=0)
        return ops.where(ops.expand_dims(inside, -1), values, fill_value)

    top = corner(y0, x0) * (1.0 - wx) + corner(y0, x0 + 1) * wx
    bottom = corner(y0 + 1, x0) * (1.0 - wx) + corner(y0 + 1, x0 + 1) * wx
    return top * (1.0 - wy) + bottom * wy


def pixel_grid(height, width):
    """`(x, y)` float32 coordinate grids, `[1, H, W]` each."""
    y, x = np.meshgrid(np.arange(height, dtype="float32"), np.arange(width, dtype="float32"), indexing="ij")
    return ops.convert_to_tensor(x[None]), ops.convert_to_tensor(y[None])


# --- Filtering ------------------------------------------------------------------------------


def filter_per_image(images, kernels, border="reflect101"):
    """`cv2.filter2D` (correlation) with a different `[K, K]` kernel for each image.

    The batch is folded into the channels so one depthwise convolution applies every
    image's kernel to each of its channels.
    """
    height, width, channels = static_image_size(images)
    size = kernels.shape[-1]
    pad = size // 2
    padded = pad_images(images, pad, border)  # [B, H+2p, W+2p, C]
    stacked = ops.reshape(ops.transpose(padded, (1, 2, 0, 3)), (1, height + 2 * pad, width + 2 * pad, -1))
    kernel = ops.repeat(ops.expand_dims(kernels, -1), channels, axis=-1)  # [B, K, K, C]
    kernel = ops.reshape(ops.transpose(kernel, (1, 2, 0, 3)), (size, size, -1, 1))
    filtered = ops.depthwise_conv(stacked, kernel, strides=1, padding="valid")  # [1, H, W, B*C]
    return ops.transpose(ops.reshape(filtered, (height, width, -1, channels)), (2, 0, 1, 3))


def select_kernels(bank, index):
    """Per-image kernels `[B, K, K]` taken from a NumPy bank `[N, K, K]` by `index` `[B]`."""
    return ops.take(ops.convert_to_tensor(bank.astype("float32")), index, axis=0)


@functools.lru_cache(maxsize=None)
def median_network(count):
    """A comparator network whose output is the median of `count` (odd) values.

    Batcher's odd-even merge sort on the next power of two, with the padding wires held at
    +inf (comparators against them resolve statically), pruned backwards to what the
    middle output needs. Returns `(steps, output)`: each step is `(index, a, b, min?,
    max?)` on value ids (input `i` is id `i`; step `k` makes ids `("min", k)` and
    `("max", k)`). 9 values: 24 comparators; 25 values: 113.
    """
    width = 1
    while width < count:
        width *= 2
    comparators = []
    block = 1
    while block < width:  # Knuth, TAOCP vol. 3, 5.2.2 (Batcher's merge exchange).
        span = block
        while span >= 1:
            for start in range(span % block, width - span, 2 * span):
                for offset in range(min(span, width - start - span)):
                    low = offset + start
                    if low // (2 * block) == (low + span) // (2 * block):
                        comparators.append((low, low + span))
            span //= 2
        block *= 2
    value = list(range(width))
    infinite = [wire >= count for wire in range(width)]
    steps = []
    for low, high in comparators:
        if infinite[high]:
            continue  # min(x, inf) stays where it is
        if infinite[low]:
            value[low], value[high] = value[high], value[low]
            infinite[low], infinite[high] = False, True
            continue
        steps.append((value[low], value[high]))
        value[low], value[high] = ("min", len(steps) - 1), ("max", len(steps) - 1)
    output = value[count // 2]
    needed, kept = {output}, []
    for index in range(len(steps) - 1, -1, -1):
        wants_min, wants_max = ("min", index) in needed, ("max", index) in needed
        if wants_min or wants_max:
            a, b = steps[index]
            kept.append((index, a, b, wants_min, wants_max))
            needed |= {a, b}
    return tuple(reversed(kept)), output


def median_filter(images, size):
    """`cv2.medianBlur(images, size)`: median of each `size x size` window, replicated border.

    A pruned sorting network of elementwise min/max over the `size^2` shifted copies
    (`median_network`): exact, fusable by XLA, and several times faster than a top-k.
    """
    height, width, _ = static_image_size(images)
    pad = size // 2
    padded = pad_images(images, pad, "replicate")
    values = {dy * size + dx: padded[:, dy:dy + height, dx:dx + width, :]
              for dy in range(size) for dx in range(size)}
    steps, output = median_network(size * size)
    for index, a, b, wants_min, wants_max in steps:
        if wants_min:
            values[("min", index)] = ops.minimum(values[a], values[b])
        if wants_max:
            values[("max", index)] = ops.maximum(values[a], values[b])
    return values[output]


# --- Colour spaces (OpenCV's 8-bit conventions) ---------------------------------------------

# OpenCV's sRGB D65 matrices (color_lab.cpp) and white point.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]], "float32")
_XYZ_TO_RGB = np.array([[3.240479, -1.53715, -0.498535],
                        [-0.969256, 1.875991, 0.041556],
                        [0.055648, -0.204043, 1.057311]], "float32")
_WHITE_X, _WHITE_Z = 0.950456, 1.088754
_LAB_EPSILON = 0.008856  # (6/29)^3
_LAB_KAPPA = 903.3


def rgb_to_lab(images):
    """`cv2.cvtColor(uint8 RGB, COLOR_RGB2LAB)` in float: `L` on 0-255 (L* x 255 / 100),
    `a` and `b` offset by 128, unrounded. `images` are RGB on 0-255, `[..., 3]`."""
    rgb = ops.clip(images / 255.0, 0.0, 1.0)
    # OpenCV linearises 8-bit RGB with the sRGB transfer curve before RGB -> XYZ.
    linear = ops.where(rgb <= 0.04045, rgb / 12.92, ops.power((rgb + 0.055) / 1.055, 2.4))
    xyz = ops.matmul(linear, ops.convert_to_tensor(_RGB_TO_XYZ.T))
    x = xyz[..., 0] / _WHITE_X
    y = xyz[..., 1]
    z = xyz[..., 2] / _WHITE_Z

    def f(t):
        t = ops.maximum(t, 0.0)
        return ops.where(t > _LAB_EPSILON, ops.power(t, 1.0 / 3.0), 7.787 * t + 16.0 / 116.0)

    fy = f(y)
    lightness = ops.where(y > _LAB_EPSILON, 116.0 * fy - 16.0, _LAB_KAPPA * ops.maximum(y, 0.0))
    a = 500.0 * (f(x) - fy) + 128.0
    b = 200.0 * (fy - f(z)) + 128.0
    return lightness * (255.0 / 100.0), a, b


def lab_to_rgb(lightness, a, b):
    """Inverse of `rgb_to_lab` (`COLOR_LAB2RGB`): RGB on 0-255, clipped, `[..., 3]`."""
    lightness = lightness * (100.0 / 255.0)
    a = a - 128.0
    b = b - 128.0
    # OpenCV's Lab2RGB: the linear segment of L* below 8 (= kappa * epsilon).
    linear_part = lightness <= 8.0
    y = ops.where(linear_part, lightness / _LAB_KAPPA, ops.power((lightness + 16.0) / 116.0, 3.0))
    fy = ops.where(linear_part, 7.787 * y + 16.0 / 116.0, (lightness + 16.0) / 116.0)
    fx = a / 500.0 + fy
    fz = fy - b / 200.0

    def f_inverse(t):
        return ops.where(t > 0.206893, t * t * t, (t - 16.0 / 116.0) / 7.787)

    xyz = ops.stack([f_inverse(fx) * _WHITE_X, y, f_inverse(fz) * _WHITE_Z], axis=-1)
    linear = ops.clip(ops.matmul(xyz, ops.convert_to_tensor(_XYZ_TO_RGB.T)), 0.0, 1.0)
    rgb = ops.where(linear <= 0.0031308, 12.92 * linear, 1.055 * ops.power(linear, 1.0 / 2.4) - 0.055)
    return ops.clip(rgb * 255.0, 0.0, 255.0)
