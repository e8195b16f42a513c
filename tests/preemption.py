"""Simulated preemption for the exact-resume tests (shared, not a test module)."""

import h5py

from yt8m_keras import train as trainer


class Preempted(Exception):
    pass


def preempt_after(monkeypatch, step):
    """Makes training stop with `Preempted` right after micro-batch `step` (backups made so far stay)."""
    original = trainer.Backup.on_train_batch_end

    def on_train_batch_end(self, batch, logs=None):
        original(self, batch, logs)
        if self.step == step:
            raise Preempted()

    monkeypatch.setattr(trainer.Backup, "on_train_batch_end", on_train_batch_end)


def weights_file_arrays(path):
    """Every array in a Keras `.weights.h5` file (weights, optimizer state, counters), by path."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays
