"""Runs GradientAccumulationOptimizer under tf.distribute for test_accumulation.

A separate process because the CPU must be split into logical devices (or
TF_CONFIG read) before TensorFlow initialises. Prints one JSON line of
measurements (mirrored) or writes the final weights (multi_worker); the
assertions live in test_accumulation.py.

    python accumulation_worker.py mirrored CHECKPOINT_DIR
    python accumulation_worker.py multi_worker OUT_JSON   # TF_CONFIG set
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

MODE = sys.argv[1]
if MODE == "mirrored":
    # Before anything touches the runtime: two logical CPUs, two replicas.
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        _cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
elif MODE == "multi_worker":
    STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
else:
    raise SystemExit(f"unknown mode {MODE!r}")

import keras  # noqa: E402

from yt8m_keras.accumulation import GradientAccumulationOptimizer  # noqa: E402

FEATURES, OUTPUTS = 5, 2


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    w = rng.normal(size=(FEATURES, OUTPUTS)).astype("float32")
    return x, np.tanh(x @ w).astype("float32")


class MultiWorkerSequential(keras.Sequential):
    """Works around keras-team/keras#20585 (Keras 3.15 `fit()` under
    MultiWorkerMirroredStrategy), which has nothing to do with accumulation.

    fit() symbolically builds from a distributed (x, y) batch with
    `strategy.reduce`, which fails; the caller builds in the scope from a
    local batch instead. fit() also reduces each step's logs across workers
    with `axis=0`, which fails for scalars; the logs get a batch axis.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not self.optimizer.built:
            raise RuntimeError("build the model in the strategy scope first")

    def train_step(self, data):
        logs = super().train_step(data)
        return {name: keras.ops.reshape(v, (1,)) for name, v in logs.items()}


def make_model(optimizer_fn, accumulation_steps):
    """Dense-only model with seeded initialisers, compiled in the scope."""
    model_class = MultiWorkerSequential if MODE == "multi_worker" else keras.Sequential
    with STRATEGY.scope():
        model = model_class(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(
                    4,
                    activation="tanh",
                    kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                    bias_initializer=keras.initializers.RandomNormal(seed=2),
                ),
                keras.layers.Dense(
                    OUTPUTS,
                    kernel_initializer=keras.initializers.GlorotUniform(seed=3),
                ),
            ]
        )
        optimizer = optimizer_fn()
        if accumulation_steps > 1:
            optimizer = GradientAccumulationOptimizer(optimizer, accumulation_steps)
        model.compile(optimizer=optimizer, loss="mse")
    return model


def adam_with_schedule():
    # The rate drops after 2 real updates: wrong if micro steps were counted.
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.05, 0.01])
    return keras.optimizers.Adam(schedule)


def weights(model):
    return [np.array(w.numpy()) for w in model.trainable_weights]


def max_abs_diff(a, b):
    return float(max(np.max(np.abs(u - v)) for u, v in zip(a, b)))


class RecordWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.after_batch = []

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch.append(weights(self.model))


def run_mirrored():
    k, b = 3, 4  # b is the global micro batch: 2 samples per replica
    x, y = make_data(9 * b)
    report = {"replicas": STRATEGY.num_replicas_in_sync}

    # Large batches of k*b, no accumulation: the reference.
    reference = make_model(adam_with_schedule, 1)
    reference.fit(x, y, batch_size=k * b, shuffle=False, verbose=0)

    # Uninterrupted: 9 micro steps = 3 updates.
    full = make_model(adam_with_schedule, k)
    full.fit(x, y, batch_size=b, shuffle=False, verbose=0)
    report["equivalence_max_abs_diff"] = max_abs_diff(weights(full), weights(reference))
    report["iterations"] = int(full.optimizer.iterations.numpy())
    report["micro_steps"] = int(full.optimizer.micro_steps.numpy())

    # Interrupted after 5 micro steps (mid cycle), checkpointed, restored
    # into a fresh model and optimizer, continued for the last 4.
    first = make_model(adam_with_schedule, k)
    initial = weights(first)
    recorder = RecordWeights()
    first.fit(x[: 5 * b], y[: 5 * b], batch_size=b, shuffle=False, verbose=0,
              callbacks=[recorder])
    seen = [initial] + recorder.after_batch
    report["changed_after_micro_step"] = [
        max_abs_diff(seen[i], seen[i - 1]) > 0 for i in range(1, len(seen))
    ]
    # Each replica added only its own gradients: the local partial sums
    # differ, so no all-reduce happened on the non-update steps.
    local = STRATEGY.experimental_local_results(first.optimizer.accumulators[0].value)
    report["local_accumulators_differ"] = bool(
        np.max(np.abs(local[0].numpy() - local[1].numpy())) > 0
    )
    report["local_accumulators_nonzero"] = bool(
        all(np.max(np.abs(v.numpy())) > 0 for v in local)
    )
    directory = sys.argv[2]
    path = tf.train.Checkpoint(model=first, optimizer=first.optimizer).save(
        os.path.join(directory, "ckpt")
    )
    resumed = make_model(adam_with_schedule, k)
    with STRATEGY.scope():
        resumed.optimizer.build(resumed.trainable_variables)
    tf.train.Checkpoint(model=resumed, optimizer=resumed.optimizer).restore(
        path
    ).assert_existing_objects_matched()
    resumed.fit(x[5 * b :], y[5 * b :], batch_size=b, shuffle=False, verbose=0)
    report["resume_max_abs_diff"] = max_abs_diff(weights(resumed), weights(full))

    # Mixed precision: compile wraps us in a LossScaleOptimizer, whose own
    # cross-replica cond now contains ours.
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        mixed = make_model(lambda: keras.optimizers.Adam(0.01), 2)
        history = mixed.fit(x, y, batch_size=b, epochs=4, shuffle=False, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    report["mixed_optimizer"] = type(mixed.optimizer).__name__
    report["mixed_loss"] = [float(v) for v in history.history["loss"]]
    report["mixed_weights_finite"] = bool(
        all(np.isfinite(w).all() for w in weights(mixed))
    )
    report["mixed_iterations"] = int(mixed.optimizer.iterations.numpy())
    # Where a strategy can skip merge_call (XLA on GPUs, not available on
    # CPU), TF still merges to update ONLY_FIRST_REPLICA variables such as the
    # wrapped optimizer's `iterations`. Emulate that mode's code paths (on
    # this strategy: a second one would clash with its collective keys).
    # Reported, not raised, so that the other measurements still come back.
    STRATEGY.extended._use_merge_call = lambda: False
    try:
        with STRATEGY.scope():
            report["no_merge_call_mode"] = (
                tf.__internal__.distribute.strategy_supports_no_merge_call()
            )
        no_merge = make_model(adam_with_schedule, k)
        no_merge.fit(x, y, batch_size=b, shuffle=False, verbose=0)
        report["no_merge_call_iterations"] = int(no_merge.optimizer.iterations.numpy())
        report["no_merge_call_max_abs_diff"] = max_abs_diff(
            weights(no_merge), weights(reference)
        )
    except Exception as error:  # noqa: BLE001 - the test shows it
        report["no_merge_call_error"] = f"{type(error).__name__}: {error}"[:2000]
    finally:
        del STRATEGY.extended._use_merge_call
    print(json.dumps(report))


def run_multi_worker():
    k, b = 2, 8
    x, y = make_data(8 * b)
    model = make_model(lambda: keras.optimizers.Adam(0.01), k)
    with STRATEGY.scope():
        # What fit() would do, from a local batch (see MultiWorkerSequential).
        model._symbolic_build(data_batch=(x[:b], y[:b]))
    initial = weights(model)
    model.fit(x, y, batch_size=b, epochs=2, shuffle=False, verbose=0)
    final = weights(model)
    with open(sys.argv[2], "w") as f:
        json.dump(
            {
                "weights": [w.tolist() for w in final],
                "moved": max_abs_diff(final, initial),
                "iterations": int(model.optimizer.iterations.numpy()),
                "micro_steps": int(model.optimizer.micro_steps.numpy()),
            },
            f,
        )


if MODE == "mirrored":
    run_mirrored()
else:
    run_multi_worker()
