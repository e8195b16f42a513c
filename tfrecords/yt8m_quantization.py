"""The YouTube-8M starter code's 8-bit quantization of frame features, without TensorFlow.

`yt8m_frame` (the record kind) and the model's `Dequantize` layer share these numbers;
this module imports only NumPy so that a model using them can be built under any Keras
backend (JAX on an accelerator host without TensorFlow, for instance).

Example:

>>> float(quantize(np.array([BIAS]))[0])
0.0
"""

import numpy as np

# 8 bits over [-2, 2].
_MIN, _MAX = -2.0, 2.0
SCALE = (_MAX - _MIN) / 255.0
BIAS = (_MAX - _MIN) / 512.0 + _MIN


def quantize(features: np.ndarray) -> np.ndarray:
    """Float features in [-2, 2] -> uint8, the inverse of dequantizing (x * SCALE + BIAS) up to rounding."""
    return np.clip(np.round((np.asarray(features, np.float32) - BIAS) / SCALE), 0, 255).astype(np.uint8)
