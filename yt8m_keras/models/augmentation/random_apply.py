"""`RandomApply`: applies a layer to each image with probability `p`."""

import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image


@keras.saving.register_keras_serializable(package="yt8m_keras")
class RandomApply(ImageAugmentation):
    """Applies `layer` to each image of a batch independently with probability `p`.

    albumentations' `p` of a single transform, batched: `layer` transforms the whole batch
    (with `training=True`) and a per-image Bernoulli(`p`) draw picks, image by image,
    between its output and the input. No per-image Python loop, so it compiles (XLA
    included); the price is that `layer` runs on every image.

    Args:
        layer: a Keras layer mapping `[B, H, W, C]` images to images of the same shape
            (this package's transforms, or Keras core ones such as `RandomBrightness`).
        p: float in [0, 1], probability that an image is transformed.
        seed: optional int, seed of the Bernoulli draws (the inner layer has its own).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    import keras
    from yt8m_keras.models.augmentation import RandomApply

    brightness = RandomApply(keras.layers.RandomBrightness(0.2, seed=1), p=0.75, seed=2)
    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    augmented = brightness(images, training=True)  # about 3 images in 4 change
    ```
    """

    clip_output = False

    def __init__(self, layer, p=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}.")
        self.layer = layer
        self.p = float(p)

    def augment(self, images):
        batch_size = ops.shape(images)[0]
        # Drawn before the inner layer runs, so this layer's stream never depends on it.
        apply = self.uniform(batch_size, 0.0, 1.0) < self.p
        transformed = ops.cast(self.layer(images, training=True), images.dtype)
        return ops.where(per_image(apply), transformed, images)

    def get_config(self):
        config = super().get_config()
        config.update(layer=keras.saving.serialize_keras_object(self.layer), p=self.p)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return super().from_config(config)
