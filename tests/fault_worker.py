"""Runs `yt8m-keras ARGS...` in this process and SIGKILLs it at a named point (fault tests).

    python tests/fault_worker.py POINT -- train --recipe ... --data ... --model-dir ...

POINT is one of (steps count micro-batches from the start of the run, across restarts):
  batch:N          right after micro-batch N and its callbacks (a backup due at N is written)
  epoch_logged:E   at the end of epoch E (0-based) after its log row and best checkpoint,
                   before its backup commits it
  epoch_saved:E    right after the end-of-epoch backup of epoch E committed
  validation:E     during the validation pass of epoch E
  backup_write:N   in the middle of writing the weights of the backup at step N (a half file)
  backup_unit:N    after the backup weights at step N are written, before its metadata
  none             no kill (the uninterrupted reference run)

The process really dies of SIGKILL (no exception, no cleanup, no atexit), as on a
preempted machine. Production code is untouched: the kill is patched in here.
"""

import os
import signal
import sys


def _kill():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str) -> None:
    from yt8m_keras import train as trainer

    if point == "none":
        return
    kind, _, value = point.partition(":")
    at = int(value)
    backup = trainer.Backup

    if kind == "batch":
        original = backup.on_train_batch_end

        def on_train_batch_end(self, batch, logs=None):
            original(self, batch, logs)
            if self.step == at:
                _kill()

        backup.on_train_batch_end = on_train_batch_end
    elif kind in ("epoch_logged", "epoch_saved"):
        original = backup.on_epoch_end

        def on_epoch_end(self, epoch, logs=None):
            if kind == "epoch_logged" and epoch == at:
                _kill()
            original(self, epoch, logs)
            if kind == "epoch_saved" and epoch == at:
                _kill()

        backup.on_epoch_end = on_epoch_end
    elif kind == "validation":
        def on_test_batch_end(self, batch, logs=None):
            if self.step // self.steps_per_epoch == at + 1 and batch >= 1:
                _kill()

        backup.on_test_batch_end = on_test_batch_end
    elif kind in ("backup_write", "backup_unit"):
        import keras

        original_save = keras.Model.save_weights
        save_weights_atomic = trainer.save_weights_atomic

        def save_half(model, filepath, overwrite=True, **kwargs):
            original_save(model, filepath, overwrite=overwrite, **kwargs)
            with open(filepath, "r+b") as f:  # what a kill mid-write leaves
                f.truncate(os.path.getsize(filepath) // 2)
            _kill()

        def patched_atomic(model, path):
            if f"step-{at:010d}" in os.path.basename(path):
                if kind == "backup_write":
                    keras.Model.save_weights = save_half
                save_weights_atomic(model, path)
                _kill()  # backup_unit: the weights are complete, the metadata is not written
            return save_weights_atomic(model, path)

        trainer.save_weights_atomic = patched_atomic
    else:
        raise SystemExit(f"unknown fault point {point!r}")


def main(argv):
    point, separator, *cli_args = argv
    assert separator == "--", "usage: fault_worker.py POINT -- ARGS..."
    install(point)
    from yt8m_keras import cli

    return cli.main(cli_args)


if __name__ == "__main__":
    # Run as a script, this file's folder (tests/, with its tests/tfrecords/) would come
    # first on sys.path and shadow the installed `tfrecords` package.
    sys.path.pop(0)
    sys.exit(main(sys.argv[1:]))
