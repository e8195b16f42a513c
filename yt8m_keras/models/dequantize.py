"""`Dequantize`: YouTube-8M frame features from uint8 to float32 [-2, 2], at the model's front.

The official records store every frame as 8-bit quantized bytes. The host's input pipeline
only decodes them (`tfrecords.yt8m_frame.parse`: uint8, a quarter of the float32 bytes);
this layer, the first of every YouTube-8M frame model, casts and dequantizes on the
accelerator with the record kind's own constants (`SCALE`, `BIAS` of `tfrecords.yt8m_quantization`,
the formula of `yt8m_frame.dequantize`), so the two can never drift.
"""

import keras
from keras import layers, ops

from tfrecords.yt8m_quantization import BIAS, SCALE


@keras.saving.register_keras_serializable(package="yt8m_keras")
class Dequantize(layers.Layer):
    """Quantized frames (uint8) -> float32 features `x * 4/255 + 4/512 - 2`, zero where masked.

    uint8 0 dequantizes to `-2 + 4/512`, not 0, so the zero rows that pad a video after its
    last frame would become non-zero; with a `mask` the layer multiplies by it, so padded
    frames come out exactly 0, as the float pipeline gave them before (the models also
    honour the mask downstream).

    Inputs must be integers (uint8 as the pipeline yields them): a Keras functional model
    casts whatever it is given to its Input's dtype (uint8), so a float tensor never
    reaches this layer there, and called directly on floats it raises rather than guess
    whether they are already dequantized. Float frames (already dequantized) go back to
    uint8 with `tfrecords.yt8m_frame.quantize_tensor`, exactly (see the `frames` serving
    signature).

    The output is float32 whatever the dtype policy (the layer's default `dtype` is
    "float32"): under mixed precision the next layers cast it, as they cast the float32
    frames the pipeline used to give.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        frames: integer `[batch, frames, dim]`, or a list/tuple of such tensors (e.g.
            `[rgb, audio]`), each dequantized the same way.
        mask: optional `[batch, frames]`, 1 for real frames, 0 for padding.

    Returns:
        float32 tensor(s) mirroring `frames`.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.dequantize import Dequantize

    rgb = np.array([[[0, 255], [128, 0]]], "uint8")     # one video, 2 frames, 2 features
    mask = np.array([[1.0, 0.0]], "float32")            # the second frame is padding
    Dequantize()(rgb, mask)  # [[[-1.9922, 2.0078], [0.0, 0.0]]]
    ```
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.supports_masking = True
        self.built = True

    def call(self, frames, mask=None):
        if isinstance(frames, (list, tuple)):
            return [self._dequantize(x, mask) for x in frames]
        return self._dequantize(frames, mask)

    def _dequantize(self, quantized, mask):
        dtype = keras.backend.standardize_dtype(quantized.dtype)
        if not dtype.startswith(("uint", "int")):
            raise ValueError(f"Dequantize expects quantized integer frames (uint8), got {dtype}; "
                             "quantize dequantized floats first (tfrecords.yt8m_frame.quantize_tensor).")
        features = ops.cast(quantized, "float32") * SCALE + BIAS
        if mask is not None:
            features = features * ops.expand_dims(ops.cast(mask, "float32"), -1)
        return ops.cast(features, self.compute_dtype)

    def compute_mask(self, inputs, previous_mask=None):
        # The frame mask is an explicit input of the layers that need it, not a Keras mask.
        return None

    def get_config(self):
        # No arguments of its own: the constants are the record kind's, not configuration.
        return super().get_config()
