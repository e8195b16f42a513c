"""Tests for yt8m_keras.accumulation.GradientAccumulationOptimizer.

Single-device tests run in this process; MirroredStrategy (2 logical CPUs)
and MultiWorkerMirroredStrategy (2 worker processes) run
accumulation_worker.py in subprocesses, because the device split and
TF_CONFIG must be in place before TensorFlow initialises.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras
from yt8m_keras.accumulation import GradientAccumulationOptimizer

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("accumulation_worker.py")
FEATURES, OUTPUTS = 5, 2
TOLERANCE = 1e-5


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    w = rng.normal(size=(FEATURES, OUTPUTS)).astype("float32")
    return x, np.tanh(x @ w).astype("float32")


def make_model():
    """Dense only (no batch-dependent layers), seeded: same start every call."""
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                4,
                activation="tanh",
                kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                bias_initializer=keras.initializers.RandomNormal(seed=2),
            ),
            keras.layers.Dense(
                OUTPUTS, kernel_initializer=keras.initializers.GlorotUniform(seed=3)
            ),
        ]
    )


def compiled(optimizer, accumulation_steps, jit_compile="auto"):
    """accumulation_steps=None: the bare optimizer, without the wrapper."""
    model = make_model()
    if accumulation_steps is not None:
        optimizer = GradientAccumulationOptimizer(optimizer, accumulation_steps)
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


def weights(model):
    """All weights, trainable or frozen, in layer order."""
    return [np.array(w.numpy()) for w in model.weights]


def max_abs_diff(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def adam_with_schedule():
    # The rate drops after 2 real updates: if micro steps were counted it
    # would drop after 2 micro steps, and Adam's bias correction would differ.
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.05, 0.01])
    return keras.optimizers.Adam(schedule)


class RecordWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.after_batch = []

    def on_train_batch_end(self, batch, logs=None):
        self.after_batch.append(weights(self.model))


# -- one device ----------------------------------------------------------------


def test_one_update_every_k_steps_with_the_mean_gradient():
    k, b = 3, 4
    x, y = make_data(2 * k * b)
    model = compiled(keras.optimizers.SGD(0.5), k)
    initial = weights(model)
    # The mean of the k micro-batch gradients at the initial weights.
    grads = []
    for i in range(k):
        with tf.GradientTape() as tape:
            loss = keras.losses.mean_squared_error(
                y[i * b : (i + 1) * b], model(x[i * b : (i + 1) * b])
            )
            loss = tf.reduce_mean(loss)
        grads.append(tape.gradient(loss, model.trainable_weights))
    mean_grads = [np.mean([g[j] for g in grads], axis=0) for j in range(len(initial))]
    expected_first_update = [w - 0.5 * g for w, g in zip(initial, mean_grads)]

    recorder = RecordWeights()
    model.fit(x, y, batch_size=b, shuffle=False, verbose=0, callbacks=[recorder])

    seen = [initial] + recorder.after_batch
    changed = [max_abs_diff(seen[i], seen[i - 1]) > 0 for i in range(1, len(seen))]
    assert changed == [False, False, True, False, False, True]
    assert max_abs_diff(seen[k], expected_first_update) <= TOLERANCE
    assert int(model.optimizer.iterations) == 2
    assert int(model.optimizer.inner_optimizer.iterations) == 2
    assert int(model.optimizer.micro_steps) == 2 * k
    # The update consumed the accumulators.
    assert all(not np.any(a.numpy()) for a in model.optimizer.accumulators)


def test_k_micro_batches_match_one_large_batch():
    k, b = 4, 4
    x, y = make_data(4 * k * b)  # 4 updates
    # XLA, as model.fit uses by default on one GPU: the update cond is compiled.
    accumulated = compiled(keras.optimizers.SGD(0.1, momentum=0.9), k, jit_compile=True)
    accumulated.fit(x, y, batch_size=b, shuffle=False, verbose=0)
    reference = compiled(keras.optimizers.SGD(0.1, momentum=0.9), None)
    reference.fit(x, y, batch_size=k * b, shuffle=False, verbose=0)
    # accumulation_steps=1 is a pass-through (a recipe's default).
    pass_through = compiled(keras.optimizers.SGD(0.1, momentum=0.9), 1)
    pass_through.fit(x, y, batch_size=k * b, shuffle=False, verbose=0)

    assert int(accumulated.optimizer.iterations) == 4
    assert max_abs_diff(weights(reference), weights(make_model())) > 1e-2
    assert max_abs_diff(weights(accumulated), weights(reference)) <= TOLERANCE
    assert max_abs_diff(weights(pass_through), weights(reference)) <= TOLERANCE


def test_adam_and_schedule_count_real_updates_only():
    k, b = 3, 4
    x, y = make_data(4 * k * b)  # 4 updates: the schedule's boundary is crossed
    accumulated = compiled(adam_with_schedule(), k)
    accumulated.fit(x, y, batch_size=b, shuffle=False, verbose=0)
    reference = compiled(adam_with_schedule(), None)
    reference.fit(x, y, batch_size=k * b, shuffle=False, verbose=0)

    assert int(accumulated.optimizer.iterations) == 4
    assert int(accumulated.optimizer.micro_steps) == 4 * k
    assert float(accumulated.optimizer.learning_rate) == pytest.approx(0.01)
    assert max_abs_diff(weights(accumulated), weights(reference)) <= TOLERANCE


def test_tf_checkpoint_mid_cycle_resumes_exactly(tmp_path):
    k, b = 3, 4
    x, y = make_data(9 * b)
    uninterrupted = compiled(adam_with_schedule(), k)
    uninterrupted.fit(x, y, batch_size=b, shuffle=False, verbose=0)

    first = compiled(adam_with_schedule(), k)
    first.fit(x[: 5 * b], y[: 5 * b], batch_size=b, shuffle=False, verbose=0)
    # Stopped 2 micro steps into the second cycle: state lives in the
    # accumulators and the counter, not only in the weights.
    assert int(first.optimizer.micro_steps) == 5
    assert any(np.any(a.numpy()) for a in first.optimizer.accumulators)
    path = tf.train.Checkpoint(model=first, optimizer=first.optimizer).save(
        str(tmp_path / "ckpt")
    )

    resumed = compiled(adam_with_schedule(), k)
    resumed.optimizer.build(resumed.trainable_variables)
    tf.train.Checkpoint(model=resumed, optimizer=resumed.optimizer).restore(
        path
    ).assert_existing_objects_matched()
    assert int(resumed.optimizer.micro_steps) == 5
    resumed.fit(x[5 * b :], y[5 * b :], batch_size=b, shuffle=False, verbose=0)

    assert int(resumed.optimizer.iterations) == 3
    np.testing.assert_array_equal(
        np.concatenate([w.ravel() for w in weights(resumed)]),
        np.concatenate([w.ravel() for w in weights(uninterrupted)]),
    )


class StopAtEpoch(keras.callbacks.Callback):
    """Simulates preemption: fails at the start of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("preempted")


def test_backup_and_restore_mid_cycle_resumes_exactly(tmp_path):
    # 5 steps per epoch with k=3: the backup at the end of epoch 1 is taken
    # 2 micro steps into a cycle.
    k, b, epochs = 3, 4, 2
    x, y = make_data(5 * b)
    uninterrupted = compiled(adam_with_schedule(), k)
    uninterrupted.fit(x, y, batch_size=b, epochs=epochs, shuffle=False, verbose=0)

    backup_dir = str(tmp_path / "backup")
    first = compiled(adam_with_schedule(), k)
    with pytest.raises(RuntimeError, match="preempted"):
        first.fit(
            x, y, batch_size=b, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup_dir), StopAtEpoch(1)],
        )
    assert int(first.optimizer.micro_steps) == 5

    resumed = compiled(adam_with_schedule(), k)
    recorder = RecordWeights()
    resumed.fit(
        x, y, batch_size=b, epochs=epochs, shuffle=False, verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup_dir), recorder],
    )
    # Only the second epoch ran; the counter went on from the backup's 5.
    assert len(recorder.after_batch) == 5
    assert int(resumed.optimizer.micro_steps) == 10
    assert int(resumed.optimizer.iterations) == 3
    np.testing.assert_array_equal(
        np.concatenate([w.ravel() for w in weights(resumed)]),
        np.concatenate([w.ravel() for w in weights(uninterrupted)]),
    )


def test_mixed_float16_inside_loss_scale_optimizer_trains():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = compiled(keras.optimizers.Adam(0.01), 2)
        x, y = make_data(32)
        history = model.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")

    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    accumulation = model.optimizer.inner_optimizer
    assert isinstance(accumulation, GradientAccumulationOptimizer)
    assert model.layers[0].compute_dtype == "float16"
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert all(np.isfinite(w).all() for w in weights(model))
    # The loss scaler skips (does not pass on) micro steps with non-finite
    # gradients, so count only what reached the accumulator.
    micro_steps = int(accumulation.micro_steps)
    assert 0 < micro_steps <= 4 * 8
    assert int(accumulation.inner_optimizer.iterations) == micro_steps // 2


def run_freeze_schedule(optimizer, batch_size, x, y):
    """All trainable, then the first layer frozen, then all again; one
    optimizer object throughout, built over every variable up front."""
    model = make_model()
    model.compile(optimizer=optimizer, loss="mse")
    optimizer.build(model.trainable_variables)
    state_before = list(optimizer.variables)
    snapshots = []
    for first_layer_trainable in (True, False, True):
        model.layers[0].trainable = first_layer_trainable
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=batch_size, shuffle=False, verbose=0)
        snapshots.append(weights(model))
    assert [id(v) for v in optimizer.variables] == [id(v) for v in state_before]
    return snapshots


def test_freezing_and_unfreezing_with_the_same_optimizer():
    k, b = 2, 4
    x, y = make_data(2 * k * b)  # 2 updates per phase
    accumulation = GradientAccumulationOptimizer(adam_with_schedule(), k)
    accumulated = run_freeze_schedule(accumulation, b, x, y)
    reference = run_freeze_schedule(adam_with_schedule(), k * b, x, y)

    # Frozen phase: the first layer did not move, the second did.
    (_, first_layer_frozen, _) = accumulated
    assert max_abs_diff(first_layer_frozen[:2], accumulated[0][:2]) == 0
    assert max_abs_diff(first_layer_frozen[2:], accumulated[0][2:]) > 0
    assert max_abs_diff(accumulated[2][:2], first_layer_frozen[:2]) > 0
    # Counters and Adam's state carried across the recompiles: identical to
    # large-batch training with the same freeze schedule at every phase.
    assert int(accumulation.iterations) == 6
    assert int(accumulation.micro_steps) == 12
    for ours, theirs in zip(accumulated, reference):
        assert max_abs_diff(ours, theirs) <= TOLERANCE


def test_config_round_trip():
    optimizer = GradientAccumulationOptimizer(
        keras.optimizers.Adam(1e-3, clipnorm=1.0), 4, name="accumulate"
    )
    config = optimizer.get_config()
    json.dumps(config)  # plain values only
    restored = GradientAccumulationOptimizer.from_config(config)
    assert restored.accumulation_steps == 4
    assert restored.name == "accumulate"
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert restored.inner_optimizer.clipnorm == 1.0
    assert float(restored.learning_rate) == pytest.approx(1e-3)
    round_trip = keras.optimizers.deserialize(
        keras.optimizers.serialize(optimizer),
        custom_objects={"GradientAccumulationOptimizer": GradientAccumulationOptimizer},
    )
    assert round_trip.get_config() == config


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="accumulation_steps"):
        GradientAccumulationOptimizer(keras.optimizers.SGD(), 0)
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        GradientAccumulationOptimizer(
            keras.optimizers.SGD(gradient_accumulation_steps=2), 2
        )
    with pytest.raises(ValueError, match="wrapped optimizer"):
        GradientAccumulationOptimizer(keras.optimizers.SGD(), 2, clipnorm=1.0)


# -- tf.distribute, in subprocesses --------------------------------------------


def worker_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def mirrored_report(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mirrored")
    result = subprocess.run(
        [sys.executable, str(WORKER), "mirrored", str(directory)],
        env=worker_env(), capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mirrored_two_replicas_match_one_large_batch(mirrored_report):
    report = mirrored_report
    assert report["replicas"] == 2
    assert report["iterations"] == 3 and report["micro_steps"] == 9
    assert report["equivalence_max_abs_diff"] <= TOLERANCE


def test_mirrored_accumulates_locally_and_updates_every_k_steps(mirrored_report):
    report = mirrored_report
    assert report["changed_after_micro_step"] == [False, False, True, False, False]
    # Per-replica partial sums differ: no all-reduce on non-update steps.
    assert report["local_accumulators_nonzero"]
    assert report["local_accumulators_differ"]


def test_mirrored_without_merge_call_mode_still_updates(mirrored_report):
    # The mode MirroredStrategy uses under XLA on GPUs, emulated on CPU: the
    # update must still happen, once per k steps, with the same result.
    report = mirrored_report
    assert "no_merge_call_error" not in report, report["no_merge_call_error"]
    assert report["no_merge_call_mode"]
    assert report["no_merge_call_iterations"] == 3
    assert report["no_merge_call_max_abs_diff"] <= TOLERANCE


def test_mirrored_checkpoint_mid_cycle_resumes(mirrored_report):
    # Not bit-exact: the checkpoint holds the replicas' sum, restored as two
    # halves, so the next sums round differently.
    assert mirrored_report["resume_max_abs_diff"] <= 1e-6


def test_mirrored_mixed_float16_trains(mirrored_report):
    report = mirrored_report
    assert report["mixed_optimizer"] == "LossScaleOptimizer"
    assert report["mixed_weights_finite"]
    assert report["mixed_loss"][-1] < 0.8 * report["mixed_loss"][0]
    assert report["mixed_iterations"] > 0


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multi_worker_mirrored_two_workers_finish_with_identical_weights(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers, logs = [], []
    for index in range(2):
        tf_config = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        log = tmp_path / f"worker{index}.log"
        logs.append(log)
        with open(log, "w") as stderr:
            workers.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), "multi_worker",
                     str(tmp_path / f"worker{index}.json")],
                    env=worker_env(TF_CONFIG=tf_config),
                    stdout=subprocess.DEVNULL, stderr=stderr,
                )
            )
    try:
        # A worker that dies leaves the other waiting in a collective: stop
        # at the first failure instead of waiting for the timeout.
        deadline = time.monotonic() + 180
        while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
            if any(w.poll() not in (None, 0) for w in workers):
                break
            time.sleep(0.2)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log.read_text()[-4000:]

    results = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    # 8 micro steps per epoch, 2 epochs, k=2.
    for result in results:
        assert result["micro_steps"] == 16
        assert result["iterations"] == 8
        assert result["moved"] > 1e-3
    for a, b in zip(results[0]["weights"], results[1]["weights"]):
        np.testing.assert_array_equal(np.array(a), np.array(b))
