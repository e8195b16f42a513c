"""`ImageAugmentation`: the base of this package's random image layers."""

import keras
from keras import layers, ops


class ImageAugmentation(layers.Layer):
    """A random, batched image transform that is the identity outside training.

    Subclasses implement `augment(images)` on float32 `[B, H, W, C]` images on the 0-255
    scale and draw every random number from `self.seed_generator` (a
    `keras.random.SeedGenerator`, so its state is a model variable: checkpointed with the
    model, and a resumed run draws the same transformations). Every image gets its own
    parameters.

    `call(images, training)` casts to float32 (uint8 input is fine) and, only when
    `training` is true, augments and clips to [0, 255]. `training=None` (a plain call or
    `model.predict`) leaves images unchanged, as `keras.layers.Dropout` does.

    The layer computes in float32 unless given another `dtype`, also under a mixed
    precision policy: the model's next layer casts to its own compute dtype.

    Args:
        seed: optional int, seed of the layer's `SeedGenerator`.
        **kwargs: standard `keras.layers.Layer` arguments.
    """

    # Wrappers (RandomApply, OneOf) leave their inner layers' values alone.
    clip_output = True

    def __init__(self, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def call(self, images, training=None):
        images = ops.cast(images, "float32")
        if not training:
            return images
        augmented = self.augment(images)
        if self.clip_output:
            augmented = ops.clip(augmented, 0.0, 255.0)
        return augmented

    def augment(self, images):
        raise NotImplementedError

    def uniform(self, batch_size, low, high, shape=()):
        """`[batch_size, *shape]` uniform draws in `[low, high)` from the layer's seed state."""
        return keras.random.uniform(
            (batch_size,) + tuple(shape), minval=low, maxval=high, seed=self.seed_generator
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed)
        return config
