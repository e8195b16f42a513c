"""`OneOf`: applies, per image, one layer picked at random among several, or none."""

import numpy as np
import keras
from keras import ops

from yt8m_keras.models.augmentation._base import ImageAugmentation
from yt8m_keras.models.augmentation._image_ops import per_image


@keras.saving.register_keras_serializable(package="yt8m_keras")
class OneOf(ImageAugmentation):
    """With probability `p` per image, applies one of `layers` to it, chosen at random.

    albumentations' `OneOf(transforms, p)`, batched: with probability `p` an image gets
    exactly one of the layers, layer `i` with probability `weights[i] / sum(weights)`
    (albumentations normalises its children's `p`; equal by default, as in the melanoma
    recipe); otherwise it is left as is. Every layer transforms the whole batch (with
    `training=True`) and each image keeps the output of the layer it drew, so nothing
    depends on a per-image Python loop.

    Args:
        layers: list of Keras layers mapping `[B, H, W, C]` images to the same shape.
        p: float in [0, 1], probability that an image gets one of the layers.
        weights: optional list of non-negative floats, one per layer (relative chances).
        seed: optional int, seed of the choice draws (each layer has its own seed).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.augmentation import GaussianBlur, GaussNoise, MedianBlur, OneOf

    blur_or_noise = OneOf([MedianBlur(5, seed=1), GaussianBlur(5, seed=2),
                           GaussNoise((5.0, 30.0), seed=3)], p=0.7, seed=4)
    images = np.random.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    augmented = blur_or_noise(images, training=True)
    ```
    """

    clip_output = False

    def __init__(self, layers, p=0.5, weights=None, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not layers:
            raise ValueError("OneOf needs at least one layer.")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}.")
        if weights is not None:
            weights = [float(weight) for weight in weights]
            if len(weights) != len(layers) or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(
                    f"weights must be {len(layers)} non-negative numbers with a positive sum, "
                    f"got {weights}."
                )
        self.choices = list(layers)
        self.p = float(p)
        self.weights_ = weights  # `weights` is a Layer property (the layer's variables).

    def augment(self, images):
        batch_size = ops.shape(images)[0]
        draws = self.uniform(batch_size, 0.0, 1.0, shape=(2,))
        apply = draws[:, 0] < self.p
        # Layer i owns the slice [edges[i], edges[i + 1]) of [0, 1).
        weights = np.ones(len(self.choices)) if self.weights_ is None else np.array(self.weights_)
        edges = np.cumsum(weights) / weights.sum()
        past_edge = ops.expand_dims(draws[:, 1], -1) >= edges[None, :-1].astype("float32")
        choice = ops.sum(ops.cast(past_edge, "int32"), axis=-1)
        result = images
        for index, layer in enumerate(self.choices):
            transformed = ops.cast(layer(images, training=True), images.dtype)
            result = ops.where(per_image(apply & (choice == index)), transformed, result)
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            layers=[keras.saving.serialize_keras_object(layer) for layer in self.choices],
            p=self.p,
            weights=self.weights_,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [keras.saving.deserialize_keras_object(layer) for layer in config["layers"]]
        return super().from_config(config)
