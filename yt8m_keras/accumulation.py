"""Gradient accumulation for any Keras 3 optimizer, safe under `tf.distribute`.

Keras 3's own `gradient_accumulation_steps` decides "update now?" with an
`ops.cond` in replica context whose true branch reaches the optimizer's
`merge_call`; `tf.distribute` forbids a `merge_call` inside control flow in
replica context, so compiled `model.fit` under `MirroredStrategy` fails
(keras-team/keras#20582). `GradientAccumulationOptimizer` wraps an optimizer
and puts that decision where a `cond` around synchronisation is allowed, the
same way `keras.optimizers.LossScaleOptimizer` does for its finite check.
"""

import copy

import tensorflow as tf

import keras
from keras import ops


class GradientAccumulationOptimizer(keras.optimizers.Optimizer):
    """Applies `optimizer` once every `accumulation_steps` training steps.

    Each call to `apply()` (one training step, a "micro step") adds the
    gradients to per-variable accumulators; every `accumulation_steps`-th call
    hands their mean to the wrapped optimizer, which updates the weights once,
    and resets the accumulators. On the other calls no weight changes. With a
    loss that is a mean over the batch, `accumulation_steps` micro batches of
    size `b` therefore give the same update as one batch of size
    `accumulation_steps * b` (up to batch-dependent layers such as
    BatchNormalization, which still see `b` samples).

    Design, and why it works where the built-in option does not
    (keras-team/keras#20582):

    - Accumulators are `ON_READ`/`SUM` variables (like Keras metrics): under
      `tf.distribute` every replica adds its own local, not yet all-reduced
      gradients, so the k-1 non-update steps cost no communication; a
      checkpoint stores their sum over replicas, and restoring splits it
      evenly again, which keeps the sum.
    - The micro-step counter is advanced and the "update now?" `cond` is taken
      in cross-replica context (inside `merge_call`), where a `cond` whose
      branch synchronises is allowed. Its true branch goes back to replica
      context with `call_for_each_replica` and calls the wrapped optimizer's
      ordinary `apply()` on `local accumulator / accumulation_steps`; that
      call all-reduces (sums) over replicas the usual way, clips, decays,
      applies constraints and EMA exactly as without accumulation. Without a
      strategy the same `cond` runs directly. Under a strategy that could
      skip `merge_call` (XLA on GPUs) we still merge: the wrapped optimizer
      merges anyway to advance its `iterations`.
    - The wrapped optimizer's `iterations` therefore counts real updates only,
      so Adam's bias correction and learning-rate schedules mean the same as
      without accumulation. `iterations` of this wrapper returns it too (what
      TensorBoard and `LossScaleOptimizer` read); the micro-step counter is
      `micro_steps`.
    - Gradients of the variables passed to `apply()` are accumulated, so the
      trainable set may change between steps (freezing/unfreezing with a
      recompile that reuses this optimizer), as long as the optimizer was
      built over every variable that will ever be trained. An update consumes
      everything accumulated: all accumulators are reset, and only the
      variables trainable at the update step are changed.

    TensorFlow backend only (distribution in this project is `tf.distribute`).
    Under `mixed_float16`, `compile()` wraps this optimizer in a
    `LossScaleOptimizer`; a micro step with non-finite gradients is skipped
    by it (not accumulated, not counted), so a cycle is always
    `accumulation_steps` finite micro steps. Variables with
    `overwrite_with_gradient` (float8 training) are not supported.

    Args:
        optimizer: The `keras.optimizers.Optimizer` to apply the accumulated
            gradients with. Put clipping, weight decay, EMA on it: they act on
            the accumulated gradient. Must not have its own
            `gradient_accumulation_steps` or `loss_scale_factor`.
        accumulation_steps: Int >= 1. Number of micro steps per update; 1
            makes this wrapper a pass-through (handy for recipes).
        name: Optional name of this optimizer.

    Example:

    ```python
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(
        optimizer=GradientAccumulationOptimizer(keras.optimizers.Adam(1e-3), 4),
        loss="mse",
    )
    # 4 batches of 16 per Adam update: an effective batch size of 64.
    model.fit(np.zeros((64, 8)), np.zeros((64, 1)), batch_size=16, verbose=0)
    assert int(model.optimizer.iterations) == 1
    assert int(model.optimizer.micro_steps) == 4
    ```
    """

    def __init__(self, optimizer, accumulation_steps, name=None, **kwargs):
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                "GradientAccumulationOptimizer supports the TensorFlow backend "
                f"only; the backend is {keras.backend.backend()!r}."
            )
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                "`optimizer` must be a keras.optimizers.Optimizer instance. "
                f"Received: {optimizer!r}"
            )
        if (
            isinstance(accumulation_steps, bool)
            or not isinstance(accumulation_steps, int)
            or accumulation_steps < 1
        ):
            raise ValueError(
                "`accumulation_steps` must be an int >= 1. "
                f"Received: {accumulation_steps!r}"
            )
        if getattr(optimizer, "gradient_accumulation_steps", None):
            raise ValueError(
                "The wrapped optimizer has gradient_accumulation_steps="
                f"{optimizer.gradient_accumulation_steps}; accumulate with "
                "GradientAccumulationOptimizer only."
            )
        if getattr(optimizer, "loss_scale_factor", None) is not None:
            # `model.fit` asks the outermost optimizer to scale the loss, so a
            # factor on the wrapped one would unscale what was never scaled.
            raise ValueError(
                "The wrapped optimizer has a loss_scale_factor; use "
                "keras.mixed_precision (LossScaleOptimizer) instead."
            )
        if kwargs:
            # clipnorm, weight_decay, EMA, ... must act on the accumulated
            # gradient, which is what the wrapped optimizer sees.
            raise ValueError(
                f"GradientAccumulationOptimizer does not take {sorted(kwargs)}; "
                "set optimizer options on the wrapped optimizer."
            )
        # A callable learning rate keeps the base class from creating an
        # unused learning-rate variable; the wrapped optimizer owns the rate.
        super().__init__(learning_rate=lambda: optimizer.learning_rate, name=name)
        self.inner_optimizer = optimizer
        self.accumulation_steps = accumulation_steps

    # -- state ---------------------------------------------------------------

    def build(self, var_list):
        var_list = list(var_list)
        for variable in var_list:
            if getattr(variable, "overwrite_with_gradient", False):
                raise ValueError(
                    "GradientAccumulationOptimizer does not support variables "
                    f"with overwrite_with_gradient=True: {variable.path}"
                )
        self._accumulators = [self._add_accumulator(v) for v in var_list]
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    def _add_accumulator(self, reference_variable):
        # ON_READ + SUM: each replica keeps its own partial sum, updated
        # without any cross-replica traffic (same mechanism as Keras metrics).
        # Colocated with the weight, as Keras does for optimizer slots.
        name = getattr(reference_variable, "path", reference_variable.name)
        name = name.replace("/", "_").replace(":", "_") + "_accumulator"
        colocate_with = (
            reference_variable.value
            if isinstance(reference_variable, keras.Variable)
            else reference_variable
        )
        with self._distribution_strategy.extended.colocate_vars_with(colocate_with):
            with keras.name_scope(self.name, caller=self):
                accumulator = keras.Variable(
                    initializer="zeros",
                    shape=reference_variable.shape,
                    dtype=reference_variable.dtype,
                    trainable=False,
                    aggregation="sum",
                    synchronization="on_read",
                    name=name,
                )
        self._track_variable(accumulator)
        return accumulator

    @property
    def variables(self):
        # Own state first (micro-step counter, accumulators), then the
        # wrapped optimizer's, as LossScaleOptimizer does; weight files index
        # optimizer variables by position in this list.
        return self._variables[:] + self.inner_optimizer.variables

    @property
    def iterations(self):
        """Number of real updates (the wrapped optimizer's `iterations`)."""
        return self.inner_optimizer.iterations

    @property
    def micro_steps(self):
        """Number of `apply()` calls (training steps) so far, a variable."""
        # The base class's own "iteration" variable is exactly this counter
        # (it already exists, is checkpointed and is replica-consistent).
        return self._iterations

    @property
    def accumulators(self):
        """The gradient accumulators, one per variable built with."""
        return list(self._accumulators)

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    # -- training step -------------------------------------------------------

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        if tf.distribute.in_cross_replica_context():
            # The update decision is taken once, in cross-replica context,
            # after every replica has accumulated: only reachable from there.
            raise ValueError(
                "apply() must be called in a replica context "
                "(inside strategy.run or model.fit)."
            )
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "Call `optimizer.build(trainable_variables)` before "
                    "`apply(grads)` without variables."
                )
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        self._check_variables_are_known(trainable_variables)

        with keras.name_scope(self.name, caller=self):
            grads, trainable_variables = self._filter_empty_gradients(
                grads, trainable_variables
            )
            for grad, variable in zip(grads, trainable_variables):
                accumulator = self._accumulator_for(variable)
                # Dense accumulators: densify IndexedSlices (embeddings).
                grad = tf.cast(tf.convert_to_tensor(grad), accumulator.dtype)
                accumulator.assign_add(grad)

            if tf.distribute.has_strategy():
                # Always merge, even where the strategy could avoid merge_call
                # (XLA on GPUs): the wrapped optimizer still merges to bump
                # its ONLY_FIRST_REPLICA `iterations`, so its apply() must
                # not sit in a replica-context cond either way.
                tf.distribute.get_replica_context().merge_call(
                    self._cross_replica_step, args=(trainable_variables,)
                )
            else:
                self._advance_and_maybe_update(
                    lambda: self._update_from_accumulators(trainable_variables)
                )

    def _cross_replica_step(self, distribution, trainable_variables):
        # Cross-replica context: a cond here may contain synchronisation
        # (#20582 is the same cond taken in replica context).
        def update_on_every_replica():
            distribution.extended.call_for_each_replica(
                self._update_from_accumulators, args=(trainable_variables,)
            )

        self._advance_and_maybe_update(update_on_every_replica)

    def _advance_and_maybe_update(self, update_fn):
        self._iterations.assign_add(1)
        is_update_step = ops.equal(
            ops.mod(self._iterations, self.accumulation_steps), 0
        )
        ops.cond(is_update_step, update_fn, lambda: None)

    def _update_from_accumulators(self, trainable_variables):
        # Replica context. Local sums / k; the wrapped optimizer all-reduces
        # (sums) them over replicas, giving the mean over all micro batches
        # because Keras already scaled each replica's loss by 1/replicas.
        mean_grads = [
            ops.divide(self._accumulator_for(v).value, self.accumulation_steps)
            for v in trainable_variables
        ]
        self.inner_optimizer.apply(mean_grads, trainable_variables)
        for accumulator in self._accumulators:
            accumulator.assign(ops.zeros_like(accumulator.value))

    def _accumulator_for(self, variable):
        return self._accumulators[self._get_variable_index(variable)]

    # -- serialization -------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self.inner_optimizer),
            "accumulation_steps": self.accumulation_steps,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Deep copy: keras.optimizers.deserialize edits the dict it is given.
        config = copy.deepcopy(config)
        optimizer = keras.optimizers.deserialize(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(optimizer, **config)
