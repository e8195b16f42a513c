"""Deep Bag of Frames: the starter code's DBoF and the 7th place's context-gated DBoF.

`build_dbof_video_model` is the YouTube-8M starter code's `frame_level_models.DbofModel`
(Abu-El-Haija et al. 2016, section 5.2): each frame (rgb and audio concatenated) is
projected to `cluster_size` units with batch norm and ReLU6, the projections are pooled
over the video's frames (max by default), then a hidden layer and the video-level
classifier (mixture of experts). The starter code samples 30 random frames per video.

`build_gated_dbof_video_model` is the context-gated DBoF of the 7th place of the 3rd
challenge (Lee 2019, https://github.com/ceshine/yt8m-2019, `GatedDBoFModel`): a
squeeze-excite context gate on each frame's projection, masked average and max pooling
concatenated, batch norm, dropout, a hidden layer, a second (video-level) context gate,
and the MoE head.

Both take quantized uint8 frames (as the input pipeline gives them) and dequantize them in
their first layer (`Dequantize`, padded frames exactly 0). Every frame-wise statistic
honours the mask: pooling ignores padded frames and batch norms on frames use masked
statistics in training, so padding never changes predictions.
"""

import keras
from keras import layers, ops

from yt8m_keras.models.dequantize import Dequantize
from yt8m_keras.models.frame_sampling import FrameSampler, frame_inputs
from yt8m_keras.models.moe import DEFAULT_L2_PENALTY, ContextGating, moe_head


POOLING_METHODS = ("max", "average", "average_max")


@keras.saving.register_keras_serializable(package="yt8m_keras")
class FramePooling(layers.Layer):
    """Pools `[batch, frames, dim]` over the real frames given by a `[batch, frames]` mask.

    Methods: `"max"` and `"average"` (the starter code's `utils.FramePooling`, restricted
    to real frames), and `"average_max"` (both, concatenated as `[average, max]`; the 7th
    place's `AvgMaxPooler`). A video without real frames pools to zeros (not -inf, not
    NaN).

    Args:
        method: one of `"max"`, `"average"`, `"average_max"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.dbof import FramePooling

    frames = np.random.normal(size=(2, 6, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0], [1] * 6], "float32")
    pooled = FramePooling("average_max")(frames, mask)  # (2, 6)
    ```
    """

    def __init__(self, method="max", **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        if method not in POOLING_METHODS:
            raise ValueError(
                f"Unknown pooling method {method!r}; expected one of {POOLING_METHODS}."
            )
        self.method = method
        self.built = True

    def call(self, frames, mask):
        real = ops.expand_dims(ops.greater(mask, 0.5), -1)  # [B, T, 1]
        num_real = ops.sum(ops.cast(real, frames.dtype), axis=1)  # [B, 1]
        pooled = []
        if self.method in ("average", "average_max"):
            total = ops.sum(ops.where(real, frames, ops.zeros_like(frames)), axis=1)
            pooled.append(total / ops.maximum(num_real, 1.0))
        if self.method in ("max", "average_max"):
            lowest = ops.full_like(frames, float("-inf"))
            maximum = ops.max(ops.where(real, frames, lowest), axis=1)
            pooled.append(ops.where(ops.greater(num_real, 0.0), maximum, ops.zeros_like(maximum)))
        return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)

    def compute_mask(self, inputs, previous_mask=None):
        # The frame mask is consumed here: the output has no frame axis to mask.
        return None

    def compute_output_spec(self, frames, mask):
        width = frames.shape[-1] * (2 if self.method == "average_max" else 1)
        return keras.KerasTensor((frames.shape[0], width), dtype=frames.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(method=self.method)
        return config


def _frames(rgb, audio, mask, num_frames, seed):
    """uint8 rgb and audio dequantized, concatenated per frame (optionally sampled at the same frames)."""
    rgb, audio = Dequantize(name="dequantize")([rgb, audio], mask)
    if num_frames is not None:
        (rgb, audio), mask = FrameSampler(num_frames, seed=seed, name="frame_sampler")(
            [rgb, audio], mask
        )
    return layers.Concatenate(name="frame_features")([rgb, audio]), mask


def build_dbof_video_model(
    num_classes,
    cluster_size=8192,
    hidden_size=1024,
    pooling="max",
    num_frames=30,
    add_batch_norm=True,
    num_experts=2,
    gating=False,
    per_class_gates=True,
    l2_penalty=DEFAULT_L2_PENALTY,
    batch_norm_momentum=0.99,
    seed=None,
    name="dbof_video",
):
    """Builds the starter code's DBoF video classifier (`frame_level_models.DbofModel`).

    Graph: `dequantize` (uint8 -> float32) -> optional `FrameSampler` -> `frame_features`
    (rgb ++ audio, 1152 wide) -> `input_bn` -> `frame_projection` (dense to `cluster_size`) -> `frame_projection_bn` ->
    ReLU6 -> `frame_pooling` (masked) -> `hidden` -> `hidden_bn` -> ReLU6 -> `embedding`
    (identity; the pre-classifier video embedding) -> `predictions` (`MixtureOfExperts`).
    Without batch norm (`add_batch_norm=False`) the dense layers have biases instead, as
    in the starter code.

    Defaults are the starter code's flags: `dbof_cluster_size=8192`,
    `dbof_hidden_size=1024`, `dbof_pooling_method="max"`, `iterations=30` random frames,
    `moe_num_mixtures=2`, `dbof_add_batch_norm=True`.

    Args:
        num_classes: int, number of classes.
        cluster_size: int, width of the per-frame projection.
        hidden_size: int, width of the hidden layer (the embedding).
        pooling: `"max"`, `"average"` or `"average_max"`, over real frames.
        num_frames: int, frames sampled per video by `FrameSampler` (random in training,
            evenly spaced otherwise), or None to pool all real frames.
        add_batch_norm: bool, batch norm on the input frames, projections and hidden layer.
        num_experts: int, experts of the MoE head.
        gating: bool, context gating of the output probabilities in the MoE head.
        per_class_gates: bool, per-class expert gates in the MoE head.
        l2_penalty: float, L2 penalty on the MoE kernels.
        batch_norm_momentum: float, momentum of every batch norm in the model.
        seed: optional int, seed of the frame sampler.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `{"rgb": uint8 [B, T, 1024], "audio": uint8
        [B, T, 128], "mask": float32 [B, T]}` to `predictions` `[B, num_classes]` (float32,
        in [0, 1]).

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.dbof import build_dbof_video_model

    model = build_dbof_video_model(num_classes=5, cluster_size=16, hidden_size=8, num_frames=4)
    batch = {
        "rgb": np.random.randint(0, 256, (2, 12, 1024)).astype("uint8"),
        "audio": np.random.randint(0, 256, (2, 12, 128)).astype("uint8"),
        "mask": np.ones((2, 12), "float32"),
    }
    probabilities = model.predict(batch)  # (2, 5)
    ```
    """
    rgb, audio, mask = frame_inputs().values()
    frames, frame_mask = _frames(rgb, audio, mask, num_frames, seed)
    if add_batch_norm:
        frames = layers.BatchNormalization(momentum=batch_norm_momentum, name="input_bn")(
            frames, mask=frame_mask
        )
    # The starter code initialises the projection with stddev 1/sqrt(feature_size).
    x = layers.Dense(
        cluster_size,
        use_bias=not add_batch_norm,
        kernel_initializer="lecun_normal",
        name="frame_projection",
    )(frames)
    if add_batch_norm:
        x = layers.BatchNormalization(
            momentum=batch_norm_momentum, name="frame_projection_bn"
        )(x, mask=frame_mask)
    x = layers.Activation("relu6", name="frame_projection_relu6")(x)
    x = FramePooling(pooling, name="frame_pooling")(x, frame_mask)
    x = layers.Dense(
        hidden_size, use_bias=not add_batch_norm, kernel_initializer="lecun_normal", name="hidden"
    )(x)
    if add_batch_norm:
        x = layers.BatchNormalization(momentum=batch_norm_momentum, name="hidden_bn")(x)
    x = layers.Activation("relu6", name="hidden_relu6")(x)
    predictions = moe_head(
        x, num_classes, num_experts, gating, per_class_gates, l2_penalty, batch_norm_momentum
    )
    return keras.Model({"rgb": rgb, "audio": audio, "mask": mask}, predictions, name=name)


def build_gated_dbof_video_model(
    num_classes,
    cluster_size=4096,
    hidden_size=2048,
    frame_gating_reduction=8,
    video_gating_reduction=4,
    dropout=0.5,
    num_frames=None,
    num_experts=4,
    gating=False,
    per_class_gates=False,
    l2_penalty=DEFAULT_L2_PENALTY,
    batch_norm_momentum=0.99,
    seed=None,
    name="gated_dbof_video",
):
    """Builds the 7th place's context-gated DBoF video classifier (Lee 2019,
    `GatedDBoFModel`).

    Graph: `dequantize` (uint8 -> float32) -> optional `FrameSampler` -> `frame_features`
    (rgb ++ audio) -> `frame_projection` (dense to `cluster_size`, ReLU) -> `frame_context_gating` (per-frame
    SE gate, `frame_gating_reduction`; masked batch-norm statistics) -> `frame_pooling`
    (masked `[average, max]`) -> `pooled_bn` -> `pooled_dropout` -> `hidden` (dense, no
    bias, ReLU) -> `video_context_gating` (SE gate, `video_gating_reduction`) ->
    `embedding` (identity; the pre-classifier video embedding) -> `predictions`.

    The second gate follows the hidden layer, as in the 7th place's code (it gates the
    `hidden_size` units rather than the `2 * cluster_size` pooled ones).

    Defaults are the 7th place's `video_gated_dbof.yaml`: `hidden_dim=4096` (our
    `cluster_size`), `fcn_dim=2048` (our `hidden_size`), `frame_se_reduction=8`,
    `video_se_reduction=4`, `p_drop=0.5`, `n_mixtures=4`, `per_class=false`.

    Args:
        num_classes: int, number of classes.
        cluster_size: int, width of the per-frame projection.
        hidden_size: int, width of the hidden layer (the embedding).
        frame_gating_reduction: int, reduction of the per-frame SE gate; 0 disables it.
        video_gating_reduction: int, reduction of the video-level SE gate; 0 disables it.
        dropout: float in [0, 1), dropout on the pooled features.
        num_frames: None to pool all real frames, or an int: frames sampled per video.
        num_experts: int, experts of the MoE head.
        gating: bool, context gating of the output probabilities in the MoE head.
        per_class_gates: bool, per-class expert gates in the MoE head.
        l2_penalty: float, L2 penalty on the MoE kernels.
        batch_norm_momentum: float, momentum of every batch norm in the model.
        seed: optional int, seed of the frame sampler.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `{"rgb": uint8 [B, T, 1024], "audio": uint8
        [B, T, 128], "mask": float32 [B, T]}` to `predictions` `[B, num_classes]` (float32,
        in [0, 1]).

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.dbof import build_gated_dbof_video_model

    model = build_gated_dbof_video_model(num_classes=5, cluster_size=16, hidden_size=8)
    batch = {
        "rgb": np.random.randint(0, 256, (2, 12, 1024)).astype("uint8"),
        "audio": np.random.randint(0, 256, (2, 12, 128)).astype("uint8"),
        "mask": np.ones((2, 12), "float32"),
    }
    probabilities = model.predict(batch)  # (2, 5)
    ```
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    rgb, audio, mask = frame_inputs().values()
    frames, frame_mask = _frames(rgb, audio, mask, num_frames, seed)
    x = layers.Dense(
        cluster_size, activation="relu", kernel_initializer="he_normal", name="frame_projection"
    )(frames)
    if frame_gating_reduction:
        x = ContextGating(
            reduction=frame_gating_reduction,
            batch_norm=True,
            batch_norm_momentum=batch_norm_momentum,
            name="frame_context_gating",
        )(x, mask=frame_mask)
    x = FramePooling("average_max", name="frame_pooling")(x, frame_mask)
    x = layers.BatchNormalization(momentum=batch_norm_momentum, name="pooled_bn")(x)
    x = layers.Dropout(dropout, name="pooled_dropout")(x)
    x = layers.Dense(
        hidden_size,
        activation="relu",
        use_bias=False,
        kernel_initializer="he_normal",
        name="hidden",
    )(x)
    if video_gating_reduction:
        x = ContextGating(
            reduction=video_gating_reduction,
            batch_norm=True,
            batch_norm_momentum=batch_norm_momentum,
            name="video_context_gating",
        )(x)
    predictions = moe_head(
        x, num_classes, num_experts, gating, per_class_gates, l2_penalty, batch_norm_momentum
    )
    return keras.Model({"rgb": rgb, "audio": audio, "mask": mask}, predictions, name=name)
