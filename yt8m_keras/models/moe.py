"""Mixture-of-experts classifier head and context gating, shared by the YouTube-8M models.

`MixtureOfExperts` is the YouTube-8M starter code's `video_level_models.MoeModel`: per class,
a softmax over `num_experts` logistic experts plus a dummy expert that always predicts 0,
optionally followed by context gating of the output probabilities (Miech et al. 2017,
"Learnable pooling with Context Gating for video classification", the 1st-challenge
winners' trick that the 2nd-challenge teams kept). `ContextGating` is that gate
(`x * sigmoid(W x + b)`) and its squeeze-excite variant used by NeXtVLAD (Lin et al. 2018)
and by the 7th place of the 3rd challenge (Lee 2019, context-gated DBoF).

Both layers build their sublayers with their own dtype policy, so a head created with
`dtype="float32"` stays float32 under a mixed-precision global policy.
"""

import keras
from keras import layers, ops

# The starter code's MoeModel default L2 penalty on the gate and expert weights.
DEFAULT_L2_PENALTY = 1e-8


@keras.saving.register_keras_serializable(package="yt8m_keras")
class ContextGating(layers.Layer):
    """Context gating: `x * sigmoid(gate(x))`, on the last axis.

    With `reduction == 1` the gate is one dense layer, `sigmoid(W x + b)` (Miech et al.
    2017, eq. 2; with `batch_norm=True` the bias is replaced by batch norm on `W x`, as in
    their code). With `reduction > 1` it is a squeeze-excite bottleneck,
    `sigmoid(W2 relu(BN(W1 x)))` with `W1` of width `dim // reduction` (NeXtVLAD's
    "SE context gating", Lin et al. 2018, section 3.3; `gating_reduction` in their code),
    which costs `2 * dim**2 / reduction` weights instead of `dim**2`.

    Inputs may be `[batch, dim]` or per frame `[batch, frames, dim]`; for the latter pass
    `mask=[batch, frames]` so padded frames do not enter the batch-norm statistics
    (the gate itself is per frame, so padding never changes the real frames' outputs).

    Args:
        reduction: int >= 1, bottleneck reduction factor; 1 means a single dense gate.
        batch_norm: bool, batch-normalise the gate's (first) pre-activation.
        batch_norm_momentum: float, momentum of the batch-norm moving statistics.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.moe import ContextGating

    gate = ContextGating(reduction=4)
    gated = gate(np.random.normal(size=(2, 16)).astype("float32"))  # (2, 16)
    ```
    """

    def __init__(self, reduction=1, batch_norm=True, batch_norm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        # Per-frame gating keeps the frame axis, so a frame mask passes through unchanged.
        self.supports_masking = True
        if int(reduction) < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}.")
        self.reduction = int(reduction)
        self.batch_norm = bool(batch_norm)
        self.batch_norm_momentum = float(batch_norm_momentum)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError("ContextGating needs a known last dimension.")
        bottleneck = dim if self.reduction == 1 else max(dim // self.reduction, 1)
        # A bias before batch norm is redundant (BN's beta replaces it).
        self.squeeze = layers.Dense(
            bottleneck,
            use_bias=not self.batch_norm,
            kernel_initializer="he_normal",
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="squeeze",
        )
        self.squeeze.build(input_shape)
        self.squeeze_bn = None
        if self.batch_norm:
            self.squeeze_bn = layers.BatchNormalization(
                momentum=self.batch_norm_momentum,
                dtype=self.dtype_policy,
                trainable=self.trainable,
                name="squeeze_bn",
            )
            self.squeeze_bn.build(tuple(input_shape[:-1]) + (bottleneck,))
        self.excite = None
        if self.reduction > 1:
            self.excite = layers.Dense(
                dim,
                kernel_initializer="he_normal",
                dtype=self.dtype_policy,
                trainable=self.trainable,
                name="excite",
            )
            self.excite.build(tuple(input_shape[:-1]) + (bottleneck,))

    def call(self, inputs, training=None, mask=None):
        gates = self.squeeze(inputs)
        if self.squeeze_bn is not None:
            bn_mask = mask if len(inputs.shape) == 3 else None
            gates = self.squeeze_bn(gates, training=training, mask=bn_mask)
        if self.excite is not None:
            gates = self.excite(ops.relu(gates))
        return inputs * ops.sigmoid(gates)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            batch_norm=self.batch_norm,
            batch_norm_momentum=self.batch_norm_momentum,
        )
        return config


@keras.saving.register_keras_serializable(package="yt8m_keras")
class MixtureOfExperts(layers.Layer):
    """Mixture of logistic experts, per class (the starter code's `MoeModel`).

    For each class `c`: `p_c = sum_e softmax(g_c)_e * sigmoid(h_c)_e` over `num_experts`
    experts, where the softmax also covers a dummy "none" expert whose prediction is always
    0 (so the gate can say "no expert knows this class" and push `p_c` to 0). The gate has
    no bias and both dense layers carry an L2 penalty, as in the starter code. With
    `per_class_gates=False` one softmax over experts is shared by all classes (the 7th
    place's `per_class: false`, far fewer weights).

    With `gating=True` the probabilities are then context-gated,
    `p * sigmoid(BN(W p))` with `W` of shape `[num_classes, num_classes]` (Miech et al.
    2017), which models label co-occurrence. Both factors are in [0, 1], so the output is
    too.

    Args:
        num_classes: int, number of output classes.
        num_experts: int >= 1, number of logistic experts (excluding the dummy expert).
        gating: bool, context-gate the output probabilities.
        per_class_gates: bool, one expert softmax per class (starter code) or one shared.
        gating_batch_norm: bool, batch norm in the output context gate.
        l2_penalty: float, L2 penalty (`l2 * sum(w**2)`) on gate and expert kernels.
        batch_norm_momentum: float, momentum of the output gate's batch norm.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:

    ```python
    import numpy as np
    from yt8m_keras.models.moe import MixtureOfExperts

    head = MixtureOfExperts(num_classes=5, num_experts=2, dtype="float32", name="predictions")
    probabilities = head(np.random.normal(size=(3, 16)).astype("float32"))  # (3, 5) in [0, 1]
    ```
    """

    def __init__(
        self,
        num_classes,
        num_experts=2,
        gating=True,
        per_class_gates=True,
        gating_batch_norm=True,
        l2_penalty=DEFAULT_L2_PENALTY,
        batch_norm_momentum=0.99,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
        if int(num_experts) < 1:
            raise ValueError(f"num_experts must be at least 1, got {num_experts}.")
        self.num_classes = int(num_classes)
        self.num_experts = int(num_experts)
        self.gating = bool(gating)
        self.per_class_gates = bool(per_class_gates)
        self.gating_batch_norm = bool(gating_batch_norm)
        self.l2_penalty = float(l2_penalty)
        self.batch_norm_momentum = float(batch_norm_momentum)

    def build(self, input_shape):
        regularizer = keras.regularizers.L2(self.l2_penalty) if self.l2_penalty else None
        gate_groups = self.num_classes if self.per_class_gates else 1
        self.gates = layers.Dense(
            gate_groups * (self.num_experts + 1),
            use_bias=False,
            kernel_regularizer=regularizer,
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="gates",
        )
        self.gates.build(input_shape)
        self.experts = layers.Dense(
            self.num_classes * self.num_experts,
            kernel_regularizer=regularizer,
            dtype=self.dtype_policy,
            trainable=self.trainable,
            name="experts",
        )
        self.experts.build(input_shape)
        self.output_gating = None
        if self.gating:
            self.output_gating = ContextGating(
                reduction=1,
                batch_norm=self.gating_batch_norm,
                batch_norm_momentum=self.batch_norm_momentum,
                dtype=self.dtype_policy,
                trainable=self.trainable,
                name="output_gating",
            )
            self.output_gating.build((input_shape[0], self.num_classes))

    def call(self, inputs, training=None):
        gate_groups = self.num_classes if self.per_class_gates else 1
        gate_logits = ops.reshape(self.gates(inputs), (-1, gate_groups, self.num_experts + 1))
        expert_logits = ops.reshape(
            self.experts(inputs), (-1, self.num_classes, self.num_experts)
        )
        # Softmax over experts + dummy expert, then drop the dummy's share: its
        # prediction is the constant 0.
        gate_distribution = ops.softmax(gate_logits, axis=-1)[..., : self.num_experts]
        probabilities = ops.sum(gate_distribution * ops.sigmoid(expert_logits), axis=-1)
        if self.output_gating is not None:
            probabilities = self.output_gating(probabilities, training=training)
        return probabilities

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            num_experts=self.num_experts,
            gating=self.gating,
            per_class_gates=self.per_class_gates,
            gating_batch_norm=self.gating_batch_norm,
            l2_penalty=self.l2_penalty,
            batch_norm_momentum=self.batch_norm_momentum,
        )
        return config


# The layer names every YouTube-8M video and segment model shares: `segment.py` finds a
# pretrained model's video embedding by name.
EMBEDDING_NAME = "embedding"
OUTPUT_NAME = "predictions"


def moe_head(x, num_classes, num_experts, gating, per_class_gates, l2_penalty, batch_norm_momentum):
    """The classifier every video/segment model ends with: `embedding` (identity) then a
    float32 `MixtureOfExperts` named `predictions`."""
    x = layers.Identity(name=EMBEDDING_NAME)(x)
    return MixtureOfExperts(
        num_classes,
        num_experts=num_experts,
        gating=gating,
        per_class_gates=per_class_gates,
        l2_penalty=l2_penalty,
        batch_norm_momentum=batch_norm_momentum,
        dtype="float32",
        name=OUTPUT_NAME,
    )(x)
