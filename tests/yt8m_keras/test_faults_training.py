"""Fault tests: real `yt8m-keras train` processes SIGKILLed at named points, then rerun.

Each rerun (the same command) must end with the weights of an uninterrupted run (every
array of `final.weights.h5`, optimizer state and counters included, within 1e-6) and a
training log with one row per epoch. Kill points are in `fault_worker.py`.
"""

import csv
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from preemption import weights_file_arrays

WORKER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fault_worker.py")
# 3 epochs of 4 micro-batches, accumulating 2 per update, backups every 5 micro-batches
# (and at each epoch end): the backup at step 5 is in the second epoch and inside an
# accumulation cycle. A kill before the last epoch matters: the trainer then calls `fit`
# again, which is where Keras' `_initial_epoch` restarted an old epoch.
CDISCOUNT = ("cdiscount_xception:tiny", ["data.image_size=32", "training.batch_size=8",
                                         "training.steps_per_epoch=4", "training.epochs=3",
                                         "training.backup_every_steps=5", "training.lr_decay_epochs=[1]",
                                         "training.accumulation_steps=2"])
TAXONOMY = ("taxonomy_t5:tiny", ["training.batch_size=16", "training.steps_per_epoch=4", "training.epochs=3",
                                  "training.backup_every_steps=3", "data.shuffle_buffer=64"])
YOUTUBE8M = ("yt8m_nextvlad:tiny", ["data.max_frames=48", "training.batch_size=8", "training.steps_per_epoch=3",
                                    "training.epochs=3", "training.backup_every_steps=2",
                                    "data.shuffle_buffer=64"])


def _train(point, recipe, data, model_dir):
    name, overrides = recipe
    command = [sys.executable, WORKER, point, "--", "train", "--recipe", name, "--data", data,
               "--model-dir", model_dir, *[arg for o in overrides for arg in ("--set", o)]]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _log_epochs(model_dir):
    with open(os.path.join(model_dir, "training_log.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _max_difference(a_dir, b_dir):
    a = weights_file_arrays(os.path.join(a_dir, "final.weights.h5"))
    b = weights_file_arrays(os.path.join(b_dir, "final.weights.h5"))
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)), initial=0))
               for k in a)


@pytest.fixture(scope="module")
def references(cdiscount_data, yt8m_data, tmp_path_factory):
    """Uninterrupted runs of both recipes, made by the same worker without a kill, each when first needed."""
    recipes = {"cdiscount": (CDISCOUNT, cdiscount_data[0]), "youtube8m": (YOUTUBE8M, yt8m_data[0])}

    class Runs(dict):
        def __missing__(self, key):
            recipe, data = recipes[key]
            model_dir = str(tmp_path_factory.mktemp(f"whole_{key}"))
            result = _train("none", recipe, data, model_dir)
            assert result.returncode == 0, result.stderr[-3000:]
            assert _log_epochs(model_dir) == [0, 1, 2]
            self[key] = (recipe, data, model_dir)
            return self[key]

    return Runs()


@pytest.fixture(scope="module")
def taxonomy_reference(taxonomy_data, tmp_path_factory):
    """An uninterrupted tiny T5 run (dropout off in :tiny, so only the data order and the state matter)."""
    model_dir = str(tmp_path_factory.mktemp("whole_taxonomy"))
    result = _train("none", TAXONOMY, taxonomy_data[0], model_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"taxonomy": (TAXONOMY, taxonomy_data[0], model_dir)}


def _kill_and_rerun(references, key, point, tmp_path):
    recipe, data, whole = references[key]
    cut = str(tmp_path / "cut")
    killed = _train(point, recipe, data, cut)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    assert not os.path.exists(os.path.join(cut, "final.weights.h5"))
    rerun = _train("none", recipe, data, cut)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _log_epochs(cut) == [0, 1, 2]
    difference = _max_difference(whole, cut)
    print(f"{key} killed at {point}: max weight difference {difference:.3g}")
    assert difference <= 1e-6
    return cut


# By default one recipe; YouTube-8M's mid-epoch kill is `slow` (its in-process resume test,
# test_pretraining_resume_is_exact, runs by default).
@pytest.mark.parametrize("key,point", [
    ("cdiscount", "batch:7"),  # mid-epoch of the second epoch, resumed mid-accumulation (backup at 5)
    pytest.param("youtube8m", "batch:5", marks=pytest.mark.slow),  # mid-epoch 2 (backup at 4)
])
def test_kill_and_rerun_ends_as_uninterrupted(references, key, point, tmp_path):
    _kill_and_rerun(references, key, point, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("key,point", [
    ("cdiscount", "epoch_logged:1"),  # the epoch's log row written, its backup not
    ("youtube8m", "validation:1"),
    ("cdiscount", "epoch_saved:0"),
    ("cdiscount", "validation:2"),
    ("cdiscount", "batch:10"),  # third epoch, right after the backup at 10
    ("cdiscount", "backup_write:5"),
    ("cdiscount", "backup_unit:5"),
    ("youtube8m", "batch:7"),
    ("youtube8m", "epoch_logged:1"),
    ("youtube8m", "epoch_saved:0"),
    ("youtube8m", "backup_write:8"),
])
def test_kill_and_rerun_ends_as_uninterrupted_slow(references, key, point, tmp_path):
    _kill_and_rerun(references, key, point, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["batch:5", "epoch_logged:1"])  # mid-epoch 2 (backup at 3); log row, no backup
def test_taxonomy_kill_and_rerun_ends_as_uninterrupted(taxonomy_reference, point, tmp_path):
    _kill_and_rerun(taxonomy_reference, "taxonomy", point, tmp_path)


@pytest.mark.slow
def test_damaged_backup_falls_back_to_the_previous_one(references, tmp_path):
    recipe, data, whole = references["cdiscount"]
    cut = str(tmp_path / "cut")
    assert _train("batch:10", recipe, data, cut).returncode == -signal.SIGKILL
    backup = os.path.join(cut, "backup")
    units = sorted(n for n in os.listdir(backup) if n.endswith(".weights.h5"))
    assert len(units) == 2  # steps 8 (end of epoch 2) and 10
    with open(os.path.join(backup, units[-1]), "r+b") as f:  # damaged by hand
        f.seek(100)
        f.write(b"\0" * 2000)
    rerun = _train("none", recipe, data, cut)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "cannot be read, trying an older one" in rerun.stdout
    assert _log_epochs(cut) == [0, 1, 2]
    assert _max_difference(whole, cut) <= 1e-6


def test_no_readable_backup_is_one_error_line(references, tmp_path):
    recipe, data, _ = references["cdiscount"]
    cut = str(tmp_path / "cut")
    assert _train("batch:6", recipe, data, cut).returncode == -signal.SIGKILL
    backup = os.path.join(cut, "backup")
    for name in os.listdir(backup):
        if name.endswith(".weights.h5"):
            with open(os.path.join(backup, name), "wb") as f:
                f.write(b"not hdf5")
    rerun = _train("none", recipe, data, cut)
    assert rerun.returncode == 2
    lines = rerun.stderr.strip().splitlines()
    assert lines[-1].startswith("error: no readable backup in") and "Traceback" not in rerun.stderr
    assert "step-0000000005.weights.h5" in lines[-1]
