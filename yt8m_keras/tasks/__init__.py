"""Tasks: what the one trainer, exporter and predictor need to know about a competition.

A task names its record kind, builds its model from a recipe and a manifest, makes its
tf.data streams, and says what to compile, what to monitor and what to serve.
"""

import importlib

from tfrecords import UserError

# name -> module; explicit, and imported only when used.
TASKS = {
    "cdiscount": "yt8m_keras.tasks.cdiscount",
}


def get_task(name: str):
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return importlib.import_module(TASKS[name])
