"""NeXtVLAD (Lin et al. 2018) and the two-branch NeXtVLAD video classifier built on it.

NeXtVLAD ("NeXtVLAD: An Efficient Neural Network to Aggregate Frame-level Features for
Large-scale Video Classification", ECCV 2018 workshops; 3rd place of the 2nd YouTube-8M
challenge, https://github.com/linrongc/youtube-8m) splits each expanded frame feature into
`groups` lower-dimensional vectors with a sigmoid attention per group, and aggregates them
with NetVLAD over time and groups. The 7th place of the 3rd challenge (Lee 2019,
https://github.com/ceshine/yt8m-2019) pretrained it at video level before the segment
fine-tuning in `segment.py`.

Builder defaults are the paper's single model (`nextvlad_cluster_size=128`, `groups=8`,
`expansion=2`, `hidden_size=2048`, `gating_reduction=8`, `drop_rate=0.5`; audio branch with
half the clusters and groups, as in linrongc's code). The 7th place used 64 clusters,
16 groups, `se_reduction=4`, 4 experts with one shared gate (`per_class_gates=False`).
"""

import keras
from keras import layers, ops

from yt8m_keras.models.dequantize import Dequantize
from yt8m_keras.models.frame_sampling import FrameSampler, frame_inputs
from yt8m_keras.models.moe import DEFAULT_L2_PENALTY, ContextGating, moe_head


# Name of the identity layer whose output is the pre-classifier video embedding; see
# `segment.video_embedding_model`.


@keras.saving.register_keras_serializable(package="yt8m_keras")
class NeXtVLAD(layers.Layer):
    """NeXtVLAD aggregation of frame features into one descriptor per video.

    For frames `x_t` (`[batch, frames, dim]`) and `mask` (`[batch, frames]`), following
    Lin et al. 2018, section 3.2, eqs. 4-6:

    1. expansion: `x'_t = W_e x_t + b_e`, width `expansion * dim`;
    2. group attention: `alpha_g(t) = sigmoid(w_g . x'_t + b_g)`, multiplied by the mask so
       padded frames contribute nothing (neither to the residual sums nor to the
       assignment totals);
    3. cluster assignment: `W_a x'_t`, batch-normalised (masked statistics in training),
       reshaped to `[groups, cluster_size]` and softmax-ed over clusters, times
       `alpha_g(t)`;
    4. residual aggregation with cluster centres `c_k` (width `expansion * dim / groups`):
       `v_k = sum_{t,g} a_{g,k}(t) * (x'_{t,g} - c_k)`;
    5. intra-normalisation (L2 of each `v_k`), flatten, L2 of the whole descriptor
       (NetVLAD's normalisation, Arandjelovic et al. 2016);
    6. `cluster_dropout`: dropout of whole clusters of the descriptor in training (the 7th
       place's `Dropout2d` over clusters).

    The aggregation runs in float32 even under mixed precision: it sums over
    `frames * groups` terms, which can overflow float16.

    Args:
        cluster_size: int, number of clusters `K`.
        groups: int, number of groups `G`; `expansion * dim` must be divisible by it.
        expansion: int >= 1, expansion factor `lambda` of the frame features.
        cluster_dropout: float in [0, 1), rate of whole-cluster dropout on the output.
        batch_norm_momentum: float, momentum of the assignment batch norm.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        frames: `[batch, frames, dim]`.
        mask: `[batch, frames]`, 1 for real frames, 0 for padding; None means all real.
        training: bool.

    Returns:
        `[batch, cluster_size * expansion * dim // groups]`, unit L2 norm (zero for a
        video without real frames).

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.nextvlad import NeXtVLAD

    frames = np.random.normal(size=(2, 12, 32)).astype("float32")
    mask = np.ones((2, 12), "float32")
    descriptor = NeXtVLAD(cluster_size=8, groups=4, expansion=2)(frames, mask)  # (2, 128)
    ```
    """

    def __init__(
        self,
        cluster_size,
        groups=8,
        expansion=2,
        cluster_dropout=0.0,
        batch_norm_momentum=0.99,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.supports_masking = True
        if int(cluster_size) < 1 or int(groups) < 1 or int(expansion) < 1:
            raise ValueError(
                "cluster_size, groups and expansion must be >= 1, got "
                f"{cluster_size}, {groups}, {expansion}."
            )
        if not 0.0 <= cluster_dropout < 1.0:
            raise ValueError(f"cluster_dropout must be in [0, 1), got {cluster_dropout}.")
        self.cluster_size = int(cluster_size)
        self.groups = int(groups)
        self.expansion = int(expansion)
        self.cluster_dropout = float(cluster_dropout)
        self.batch_norm_momentum = float(batch_norm_momentum)

    def build(self, frames_shape):
        dim = frames_shape[-1]
        if dim is None:
            raise ValueError("NeXtVLAD needs a known feature dimension.")
        expanded = self.expansion * dim
        if expanded % self.groups:
            raise ValueError(
                f"expansion * dim = {expanded} is not divisible by groups = {self.groups}."
            )
        self.group_size = expanded // self.groups
        # Variance-scaling (He) initialisers, as slim.variance_scaling_initializer in the
        # reference implementation.
        self.expansion_dense = layers.Dense(
            expanded,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="expansion",
        )
        self.expansion_dense.build(frames_shape)
        expanded_shape = tuple(frames_shape[:-1]) + (expanded,)
        self.attention_dense = layers.Dense(
            self.groups,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="attention",
        )
        self.attention_dense.build(expanded_shape)
        # No bias: the batch norm right after it has its own offset.
        self.assignment_dense = layers.Dense(
            self.groups * self.cluster_size,
            use_bias=False,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="assignment",
        )
        self.assignment_dense.build(expanded_shape)
        self.assignment_bn = layers.BatchNormalization(
            momentum=self.batch_norm_momentum,
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="assignment_bn",
        )
        self.assignment_bn.build(tuple(frames_shape[:-1]) + (self.groups * self.cluster_size,))
        self.centres = self.add_weight(
            name="centres",
            shape=(self.cluster_size, self.group_size),
            initializer="he_normal",
        )
        # noise_shape drops whole clusters: [batch, clusters, group_size] -> one draw per
        # (video, cluster).
        self.dropout = layers.Dropout(
            self.cluster_dropout,
            noise_shape=(None, self.cluster_size, 1),
            dtype=self.dtype_policy,
            name="cluster_dropout",
        )

    def call(self, frames, mask=None, training=None):
        batch, num_frames = ops.shape(frames)[0], ops.shape(frames)[1]
        if mask is None:
            mask = ops.ones((batch, num_frames), dtype=self.compute_dtype)
        x = self.expansion_dense(frames)  # [B, T, lambda * D]
        attention = ops.sigmoid(self.attention_dense(x))  # [B, T, G]
        attention = attention * ops.cast(ops.expand_dims(mask, -1), attention.dtype)

        assignment = self.assignment_dense(x)
        assignment = self.assignment_bn(assignment, training=training, mask=mask)
        assignment = ops.reshape(
            assignment, (batch, num_frames, self.groups, self.cluster_size)
        )
        assignment = ops.softmax(assignment, axis=-1) * ops.expand_dims(attention, -1)

        assignment = ops.cast(assignment, "float32")  # [B, T, G, K]
        grouped = ops.cast(
            ops.reshape(x, (batch, num_frames, self.groups, self.group_size)), "float32"
        )  # [B, T, G, d]
        # sum_{t,g} a * x'  -  (sum_{t,g} a) * c_k
        weighted_sum = ops.einsum("btgk,btgd->bkd", assignment, grouped)
        assignment_total = ops.sum(assignment, axis=(1, 2))  # [B, K]
        centres = ops.cast(self.centres, "float32")
        vlad = weighted_sum - ops.expand_dims(assignment_total, -1) * centres

        # ops.normalize divides by max(norm, epsilon): an all-zero (empty) video stays 0.
        vlad = ops.normalize(vlad, axis=-1)  # intra-normalisation, per cluster
        vlad = ops.reshape(vlad, (batch, self.cluster_size * self.group_size))
        vlad = ops.normalize(vlad, axis=-1)
        vlad = ops.cast(vlad, self.compute_dtype)
        if self.cluster_dropout:
            vlad = ops.reshape(vlad, (batch, self.cluster_size, self.group_size))
            vlad = self.dropout(vlad, training=training)
            vlad = ops.reshape(vlad, (batch, self.cluster_size * self.group_size))
        return vlad

    def compute_mask(self, inputs, previous_mask=None):
        # The frame mask is consumed here: the output has no frame axis to mask.
        return None

    def compute_output_spec(self, frames, mask=None, training=None):
        group_size = self.expansion * frames.shape[-1] // self.groups
        return keras.KerasTensor(
            (frames.shape[0], self.cluster_size * group_size), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            cluster_size=self.cluster_size,
            groups=self.groups,
            expansion=self.expansion,
            cluster_dropout=self.cluster_dropout,
            batch_norm_momentum=self.batch_norm_momentum,
        )
        return config


def build_nextvlad_video_model(
    num_classes,
    cluster_size=128,
    groups=8,
    expansion=2,
    hidden_size=2048,
    dropout=0.5,
    cluster_dropout=0.0,
    gating_reduction=8,
    num_frames=None,
    gating=True,
    num_experts=2,
    per_class_gates=True,
    l2_penalty=DEFAULT_L2_PENALTY,
    batch_norm_momentum=0.99,
    seed=None,
    name="nextvlad_video",
):
    """Builds the NeXtVLAD video classifier (Lin et al. 2018, fig. 3; linrongc's
    `NeXtVLADModel`).

    Graph: `dequantize` (uint8 frames -> float32, zero on padding; `Dequantize`) ->
    optional `FrameSampler` (rgb and audio at the same frames) -> `rgb_nextvlad`
    (`cluster_size` clusters, `groups` groups) and `audio_nextvlad` (`cluster_size // 2`,
    `groups // 2`, as in the reference code) -> concatenate -> dropout -> `hidden`
    (dense, no bias) -> `hidden_bn` -> `context_gating` (SE gate, `gating_reduction`) ->
    `embedding` (identity; the pre-classifier video embedding used by `segment.py`) ->
    `predictions` (`MixtureOfExperts`, float32).

    Args:
        num_classes: int, number of classes.
        cluster_size: int, clusters of the rgb NeXtVLAD (audio gets half, at least 1).
        groups: int, groups of the rgb NeXtVLAD (audio gets half, at least 1).
        expansion: int, NeXtVLAD expansion factor.
        hidden_size: int, width of the hidden layer (the embedding).
        dropout: float in [0, 1), dropout on the concatenated VLAD descriptors.
        cluster_dropout: float in [0, 1), whole-cluster dropout inside each NeXtVLAD.
        gating_reduction: int, reduction of the SE context gate after the hidden layer;
            0 disables the gate.
        num_frames: None to aggregate all real frames, or an int: sample that many frames
            per video with `FrameSampler` (random in training, evenly spaced otherwise).
        gating: bool, context gating of the output probabilities in the MoE head.
        num_experts: int, experts of the MoE head.
        per_class_gates: bool, per-class expert gates in the MoE head (starter code).
        l2_penalty: float, L2 penalty on the MoE kernels.
        batch_norm_momentum: float, momentum of every batch norm in the model.
        seed: optional int, seed of the frame sampler.
        name: model name.

    Returns:
        A functional `keras.Model` mapping `{"rgb": uint8 [B, T, 1024], "audio": uint8
        [B, T, 128], "mask": float32 [B, T]}` (quantized frames, as the input pipeline
        gives them; T may vary between batches) to `predictions` `[B, num_classes]`,
        float32 probabilities in [0, 1].

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.nextvlad import build_nextvlad_video_model

    model = build_nextvlad_video_model(
        num_classes=5, cluster_size=4, groups=2, expansion=1, hidden_size=16
    )
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
    if hidden_size < 1:
        raise ValueError(f"hidden_size must be >= 1, got {hidden_size}.")
    rgb, audio, mask = frame_inputs().values()

    rgb_frames, audio_frames = Dequantize(name="dequantize")([rgb, audio], mask)
    frame_mask = mask
    if num_frames is not None:
        (rgb_frames, audio_frames), frame_mask = FrameSampler(
            num_frames, seed=seed, name="frame_sampler"
        )([rgb_frames, audio_frames], mask)

    rgb_vlad = NeXtVLAD(
        cluster_size,
        groups=groups,
        expansion=expansion,
        cluster_dropout=cluster_dropout,
        batch_norm_momentum=batch_norm_momentum,
        name="rgb_nextvlad",
    )(rgb_frames, frame_mask)
    audio_vlad = NeXtVLAD(
        max(cluster_size // 2, 1),
        groups=max(groups // 2, 1),
        expansion=expansion,
        cluster_dropout=cluster_dropout,
        batch_norm_momentum=batch_norm_momentum,
        name="audio_nextvlad",
    )(audio_frames, frame_mask)

    x = layers.Concatenate(name="vlad")([rgb_vlad, audio_vlad])
    x = layers.Dropout(dropout, name="vlad_dropout")(x)
    x = layers.Dense(
        hidden_size, use_bias=False, kernel_initializer="he_normal", name="hidden"
    )(x)
    x = layers.BatchNormalization(momentum=batch_norm_momentum, name="hidden_bn")(x)
    if gating_reduction:
        x = ContextGating(
            reduction=gating_reduction,
            batch_norm=True,
            batch_norm_momentum=batch_norm_momentum,
            name="context_gating",
        )(x)
    predictions = moe_head(x, num_classes, num_experts, gating, per_class_gates, l2_penalty,
                           batch_norm_momentum)
    return keras.Model({"rgb": rgb, "audio": audio, "mask": mask}, predictions, name=name)
