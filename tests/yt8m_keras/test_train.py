import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from preemption import Preempted, preempt_after, weights_file_arrays

from tfrecords import UserError
from yt8m_keras import train as trainer
from yt8m_keras.recipes import load_recipe



def test_training_run_directory(trained_run):
    model_dir, recipe = trained_run
    for name in ("recipe.yaml", "classes.csv", "best.weights.h5", "final.weights.h5", "training_log.csv",
                 "backup", "logs"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    lines = open(os.path.join(model_dir, "training_log.csv")).read().splitlines()
    assert len(lines) == 1 + recipe.training.epochs and "val_accuracy" in lines[0]


# The same resume, from a real SIGKILL, runs by default in test_faults_training.py.
@pytest.mark.slow
def test_resume_mid_epoch_and_mid_accumulation_is_exact(cdiscount_data, tiny_training, tmp_path, monkeypatch):
    data, _ = cdiscount_data
    # Backups every 3 micro-batches with 2 per update: the one at step 3 is inside epoch 1
    # and inside an accumulation cycle.
    recipe = load_recipe("cdiscount_xception:tiny", [*tiny_training, "training.backup_every_steps=3"])
    assert recipe.training.accumulation_steps == 2
    trainer.train(recipe, data, str(tmp_path / "whole"), verbose=0)

    preempt_after(monkeypatch, 3)
    with pytest.raises(Preempted):
        trainer.train(recipe, data, str(tmp_path / "cut"), verbose=0)
    monkeypatch.undo()
    resumed = trainer.train(recipe, data, str(tmp_path / "cut"), verbose=0)
    assert resumed["step"] == recipe.training.epochs * recipe.training.steps_per_epoch

    whole = weights_file_arrays(tmp_path / "whole" / "final.weights.h5")
    cut = weights_file_arrays(tmp_path / "cut" / "final.weights.h5")
    assert whole.keys() == cut.keys()
    for name in whole:  # weights, Adam moments, accumulators, counters
        np.testing.assert_allclose(cut[name], whole[name], rtol=0, atol=1e-6, err_msg=name)


def test_stage_schedule_switches_trainable_layers_and_keeps_optimizer():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    body = keras.layers.Dense(4, name="body")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(body(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    model.optimizer.build(model.trainable_variables)

    def set_stage(m, stage):
        m.get_layer("body").trainable = stage == "full"

    snapshots = []
    snapshot = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append(model.get_layer("body").get_weights()[0].copy()))
    set_stage(model, "top")
    before = model.get_layer("body").get_weights()[0].copy()
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.zeros((16, 2))
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[trainer.StageSchedule({0: "top", 1: "full"}, set_stage, "top"), snapshot])
    np.testing.assert_array_equal(snapshots[0], before)  # epoch 1: head only
    assert not np.allclose(snapshots[1], before)  # epoch 2: everything
    assert int(model.optimizer.iterations) == 4


def test_strategy_errors():
    with pytest.raises(UserError, match="unknown strategy 'bogus'"):
        trainer.make_strategy("bogus")
    with pytest.raises(UserError, match="no TPU found"):
        trainer.make_strategy("tpu")


def test_step_decay_counts_updates_not_micro_batches():
    recipe = load_recipe("cdiscount_xception:tiny", ["training.steps_per_epoch=10", "training.accumulation_steps=5",
                                                     "training.lr_decay_epochs=[2]", "training.learning_rate=1.0"])
    optimizer = trainer.make_optimizer(recipe.training)
    schedule = optimizer.inner_optimizer._learning_rate
    # 2 epochs = 20 micro-batches = 4 updates.
    assert float(schedule(3)) == 1.0 and abs(float(schedule(5)) - 0.1) < 1e-7


def test_mirrored_strategy_trains_with_two_replicas(cdiscount_data, tiny_training, tmp_path):
    data, _ = cdiscount_data
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from yt8m_keras.recipes import load_recipe
        from yt8m_keras.train import train
        recipe = load_recipe("cdiscount_xception:tiny", {[*tiny_training, "training.epochs=1"]!r})
        result = train(recipe, {data!r}, {str(tmp_path)!r}, strategy="mirrored", verbose=0)
        print("replicas", result["model"].distribute_strategy.num_replicas_in_sync, "steps", result["step"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2 steps 4" in result.stdout


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # two TensorFlow processes training: about a minute on 2 cores
def test_multi_worker_training_with_two_processes(cdiscount_data, tiny_training, tmp_path):
    import json

    data, _ = cdiscount_data
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    script = textwrap.dedent(f"""
        import numpy as np
        from yt8m_keras.recipes import load_recipe
        from yt8m_keras.train import train
        recipe = load_recipe("cdiscount_xception:tiny", {[*tiny_training, "training.epochs=1", "training.steps_per_epoch=2"]!r})
        result = train(recipe, {data!r}, {str(tmp_path / "model")!r}, strategy="multi_worker", verbose=0)
        np.save({str(tmp_path)!r} + "/worker%s.npy" % __import__("os").environ["WORKER"],
                np.concatenate([w.numpy().ravel() for w in result["model"].trainable_weights]))
        print("replicas", result["model"].distribute_strategy.num_replicas_in_sync, "steps", result["step"])
    """)
    procs = []
    for index in range(2):
        env = {**os.environ, "WORKER": str(index),
               "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "replicas 2 steps 2" in out
    # Trainable weights are all-reduced, so identical; BatchNorm statistics stay per worker.
    np.testing.assert_array_equal(np.load(tmp_path / "worker0.npy"), np.load(tmp_path / "worker1.npy"))
    assert (tmp_path / "model" / "final.weights.h5").exists()  # the chief's
    assert (tmp_path / "model" / "workers" / "worker1" / "final.weights.h5").exists()


def test_warmup_then_linear_decay():
    schedule = trainer.WarmupLinearDecay(1.0, warmup_steps=10, total_steps=110)
    assert [round(float(schedule(s)), 4) for s in (0, 5, 10, 60, 110, 200)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]


def test_lr_multipliers_scale_the_update_of_matching_variables():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="head")(keras.layers.Dense(3, name="segment_encoder_dense")(inputs))
    model = keras.Model(inputs, outputs)
    recipe = load_recipe("cdiscount_xception:tiny", ["training.optimizer=sgd", "training.learning_rate=0.1",
                                                     "training.lr_decay_epochs=[]",
                                                     "training.lr_multipliers={segment_encoder: 0.5}",
                                                     "training.accumulation_steps=1"])
    optimizer = trainer.make_optimizer(recipe.training)
    grads = [keras.ops.ones_like(v) for v in model.trainable_variables]
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    for v, b in zip(model.trainable_variables, before):
        # Nesterov SGD's first step moves by lr * (1 + momentum) * gradient.
        expected = 0.1 * 1.9 * (0.5 if v.path.startswith("segment_encoder") else 1.0)
        np.testing.assert_allclose(b - v.numpy(), expected, rtol=1e-5, err_msg=v.path)
