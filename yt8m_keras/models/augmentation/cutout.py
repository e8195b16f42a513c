"""`Cutout`: fills square holes of a fixed size, centred at random."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import static_image_size


@keras.saving.register_keras_serializable(package="yt8m_keras")
class Cutout(ImageAugmentation):
    """Fills `num_holes` rectangles of `size_fraction` x the image side with `fill_value`.

    albumentations' `Cutout(num_holes, max_h_size, max_w_size, fill_value)` (0.4.6), with
    the hole side given relative to the image (`max_h_size = int(height * size_fraction)`,
    as the melanoma recipe sets it after resizing): a centre `(y, x)` is drawn uniformly
    among the integers `0..height` and `0..width` (both ends included), the hole's corner
    is the centre minus half the side, and the hole is clipped to the image (so holes near
    the bottom or right edge are cut short).

    Args:
        size_fraction: float in (0, 1], hole side as a fraction of the image side.
        num_holes: int >= 1, holes per image.
        fill_value: float, value written into the holes.
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import Cutout

    images = np.full((4, 32, 32, 3), 200.0, "float32")
    augmented = Cutout(0.375, seed=0)(images, training=True)  # one 12 x 12 hole each
    ```
    """

    def __init__(self, size_fraction=0.375, num_holes=1, fill_value=0.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 < float(size_fraction) <= 1.0:
            raise ValueError(f"size_fraction must be in (0, 1], got {size_fraction}.")
        if int(num_holes) < 1:
            raise ValueError(f"num_holes must be at least 1, got {num_holes}.")
        self.size_fraction = float(size_fraction)
        self.num_holes = int(num_holes)
        self.fill_value = float(fill_value)

    def augment(self, images):
        height, width, _ = static_image_size(images)
        hole_h = int(height * self.size_fraction)
        hole_w = int(width * self.size_fraction)
        batch_size = ops.shape(images)[0]
        # random.randint(0, n) includes n: floor(U[0, 1) * (n + 1)).
        centres = ops.floor(self.uniform(batch_size, 0.0, 1.0, shape=(self.num_holes, 2))
                            * ops.convert_to_tensor([height + 1.0, width + 1.0]))
        y1 = ops.clip(centres[..., 0] - hole_h // 2, 0, height)  # [B, holes]
        x1 = ops.clip(centres[..., 1] - hole_w // 2, 0, width)
        y2 = ops.clip(y1 + hole_h, 0, height)
        x2 = ops.clip(x1 + hole_w, 0, width)
        rows = ops.arange(height, dtype="float32")[None, None, :]
        cols = ops.arange(width, dtype="float32")[None, None, :]
        in_rows = (rows >= y1[..., None]) & (rows < y2[..., None])  # [B, holes, H]
        in_cols = (cols >= x1[..., None]) & (cols < x2[..., None])  # [B, holes, W]
        hole = ops.any(in_rows[:, :, :, None] & in_cols[:, :, None, :], axis=1)  # [B, H, W]
        return ops.where(hole[..., None], self.fill_value, images)

    def get_config(self):
        config = super().get_config()
        config.update(size_fraction=self.size_fraction, num_holes=self.num_holes, fill_value=self.fill_value)
        return config
