"""`FrameSampler`: a fixed number of frames per video, taken among its real (unmasked) frames.

Frame-level YouTube-8M models see up to 300 frames per video; sampling a fixed, smaller
number speeds training up and acts as augmentation. The starter code's DBoF samples 30
frames at random, with replacement (`utils.SampleRandomFrames`); we do the same in
training and take evenly spaced frames in evaluation and inference, so predictions are
deterministic and do not depend on how much padding follows the video.
"""

import keras
from keras import layers, ops


RGB_SIZE = 1024
AUDIO_SIZE = 128
FRAME_INPUT_NAMES = ("rgb", "audio", "mask")


def frame_inputs(prefix=""):
    """`keras.Input`s for frames: `{prefix}rgb` uint8 [B, T, 1024], `{prefix}audio` uint8
    [B, T, 128] (quantized, as `tfrecords.yt8m_frame.parse` gives them; the model's
    `Dequantize` layer makes floats of them) and `{prefix}mask` float32 [B, T] (1 for real
    frames), as a dict keyed by input name.

    Every YouTube-8M model takes these (segment models twice: `segment_` and no prefix).
    """
    return {
        prefix + "rgb": keras.Input(shape=(None, RGB_SIZE), dtype="uint8", name=prefix + "rgb"),
        prefix + "audio": keras.Input(shape=(None, AUDIO_SIZE), dtype="uint8", name=prefix + "audio"),
        prefix + "mask": keras.Input(shape=(None,), dtype="float32", name=prefix + "mask"),
    }


@keras.saving.register_keras_serializable(package="yt8m_keras")
class FrameSampler(layers.Layer):
    """Samples `num_samples` frames per video among the frames where `mask` is 1.

    - Training (`training=True`): each of the `num_samples` frames is drawn uniformly at
      random, with replacement, among the video's real frames (the starter code's
      `SampleRandomFrames`), from a `keras.random.SeedGenerator(seed)`.
    - Evaluation and inference: the frames at the centres of `num_samples` equal slices
      of the video, `floor((i + 0.5) * n / num_samples)` for `i < num_samples` among the
      `n` real frames, in order.

    A video with fewer than `num_samples` real frames repeats frames. Real frames need
    not be a prefix: the `k`-th real frame is found from the cumulative sum of the mask.
    A video without real frames gives zero frames and a zero `sampled_mask` (no NaN), so
    masked pooling downstream sees an empty video.

    Call arguments:
        frames: `[batch, frames, dim]` tensor, or a list/tuple of such tensors (e.g.
            `[rgb, audio]`), all sampled at the same frame indices.
        mask: `[batch, frames]`, 1 for real frames, 0 for padding.
        training: bool, random (True) or evenly spaced (False/None) frames.

    Returns:
        `(sampled, sampled_mask)`: `sampled` mirrors `frames` with `num_samples` frames
        (`[batch, num_samples, dim]` per tensor); `sampled_mask` is `[batch, num_samples]`
        in the mask's dtype, all ones for a video with at least one real frame.

    Args:
        num_samples: int >= 1, frames per video after sampling.
        seed: optional int, seed of the training-time sampler.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.frame_sampling import FrameSampler

    frames = np.random.normal(size=(2, 10, 4)).astype("float32")
    mask = np.array([[1.0] * 10, [1.0] * 3 + [0.0] * 7], "float32")
    sampled, sampled_mask = FrameSampler(num_samples=5, seed=0)(frames, mask)
    # sampled: (2, 5, 4); the second video repeats its 3 frames.
    ```
    """

    def __init__(self, num_samples, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
        self.num_samples = int(num_samples)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True

    def call(self, frames, mask, training=None):
        real = ops.cast(ops.greater(mask, 0.5), "float32")
        num_real = ops.sum(real, axis=1, keepdims=True)  # [B, 1]
        if training:
            uniform = keras.random.uniform(
                (ops.shape(mask)[0], self.num_samples), seed=self.seed_generator
            )
            ranks = ops.floor(uniform * num_real)
        else:
            centres = (ops.arange(self.num_samples, dtype="float32") + 0.5) / self.num_samples
            ranks = ops.floor(ops.expand_dims(centres, 0) * num_real)
        # uniform * n can round up to n in float32; rank n-1 is the last real frame.
        ranks = ops.minimum(ranks, ops.maximum(num_real - 1.0, 0.0))
        # The (r+1)-th real frame is the first position whose cumulative count exceeds r,
        # i.e. its index is the number of positions whose cumulative count is <= r.
        cumulative = ops.cumsum(real, axis=1)  # [B, T]
        indices = ops.sum(
            ops.cast(
                ops.less_equal(ops.expand_dims(cumulative, 1), ops.expand_dims(ranks, 2)),
                "int32",
            ),
            axis=2,
        )  # [B, S]
        # An empty video gives index T (past the end); clamp, and zero it via the mask.
        indices = ops.minimum(indices, ops.shape(mask)[1] - 1)
        has_frames = ops.cast(ops.greater(num_real, 0.0), mask.dtype)  # [B, 1]
        sampled_mask = ops.take_along_axis(mask, indices, axis=1) * has_frames

        def gather(tensor):
            picked = ops.take_along_axis(tensor, ops.expand_dims(indices, -1), axis=1)
            return picked * ops.cast(ops.expand_dims(sampled_mask, -1), picked.dtype)

        if isinstance(frames, (list, tuple)):
            sampled = type(frames)(gather(tensor) for tensor in frames)
        else:
            sampled = gather(frames)
        return sampled, sampled_mask

    def compute_mask(self, inputs, previous_mask=None):
        # The sampled mask is returned as an output; the input mask does not apply.
        return None

    def compute_output_spec(self, frames, mask, training=None):
        # Spelled out (rather than compute_output_shape) because `frames` may be a list
        # and Keras treats a call argument named `mask` specially when inferring shapes.
        def sampled_spec(tensor):
            shape = (tensor.shape[0], self.num_samples) + tuple(tensor.shape[2:])
            return keras.KerasTensor(shape, dtype=tensor.dtype)

        if isinstance(frames, (list, tuple)):
            sampled = type(frames)(sampled_spec(tensor) for tensor in frames)
        else:
            sampled = sampled_spec(frames)
        return sampled, keras.KerasTensor((mask.shape[0], self.num_samples), dtype=mask.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(num_samples=self.num_samples, seed=self.seed)
        return config
