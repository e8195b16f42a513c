"""`HueSaturationValue`: random shifts of hue, saturation and value on OpenCV's HSV scales."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image, static_image_size, symmetric_range


@keras.saving.register_keras_serializable(package="yt8m_keras")
class HueSaturationValue(ImageAugmentation):
    """Shifts each image's hue, saturation and value by random amounts.

    albumentations' `HueSaturationValue(hue_shift_limit, sat_shift_limit, val_shift_limit)`
    (0.4.6, uint8 path): in OpenCV's 8-bit HSV (hue in [0, 180), half-degrees;
    saturation and value in [0, 255]), `hue = (hue + dh) mod 180`,
    `sat = clip(sat + ds, 0, 255)`, `val = clip(val + dv, 0, 255)`, one `(dh, ds, dv)`
    drawn per image, then back to RGB. So `hue_shift_limit=10` turns hues by up to 20
    degrees. `keras.layers.RandomHue` / `RandomSaturation` use other units and scale
    saturation multiplicatively, hence this layer. The conversions are
    `keras.ops.image.rgb_to_hsv` / `hsv_to_rgb` in float (no 8-bit rounding).

    Args:
        hue_shift_limit: float `l` for `dh ~ U(-l, l)` (half-degrees), or a pair.
        sat_shift_limit: float or pair, saturation shift (0-255 scale).
        val_shift_limit: float or pair, value shift (0-255 scale).
        seed: optional int, seed of the layer's draws.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import HueSaturationValue

    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    shifted = HueSaturationValue(10, 20, 10, seed=0)(images, training=True)
    ```
    """

    def __init__(self, hue_shift_limit=20, sat_shift_limit=30, val_shift_limit=20, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.ranges = (
            symmetric_range(hue_shift_limit, "hue_shift_limit"),
            symmetric_range(sat_shift_limit, "sat_shift_limit"),
            symmetric_range(val_shift_limit, "val_shift_limit"),
        )
        self.hue_shift_limit = hue_shift_limit
        self.sat_shift_limit = sat_shift_limit
        self.val_shift_limit = val_shift_limit

    def augment(self, images):
        _, _, channels = static_image_size(images)
        if channels != 3:
            raise ValueError(f"HueSaturationValue needs RGB images, got {channels} channels.")
        batch_size = ops.shape(images)[0]
        shifts = [per_image(self.uniform(batch_size, low, high)) for low, high in self.ranges]
        hsv = ops.image.rgb_to_hsv(ops.clip(images / 255.0, 0.0, 1.0), data_format="channels_last")
        hue = ops.mod(hsv[..., 0:1] * 180.0 + shifts[0], 180.0) / 180.0
        saturation = ops.clip(hsv[..., 1:2] * 255.0 + shifts[1], 0.0, 255.0) / 255.0
        value = ops.clip(hsv[..., 2:3] * 255.0 + shifts[2], 0.0, 255.0) / 255.0
        hsv = ops.concatenate([hue, saturation, value], axis=-1)
        rgb = ops.image.hsv_to_rgb(hsv, data_format="channels_last")
        return rgb * 255.0

    def get_config(self):
        config = super().get_config()
        config.update(
            hue_shift_limit=self.hue_shift_limit,
            sat_shift_limit=self.sat_shift_limit,
            val_shift_limit=self.val_shift_limit,
        )
        return config
