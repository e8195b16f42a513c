"""Tasks: what the one trainer, exporter and predictor need to know about a competition.

A task names its record kind, builds its model from a recipe and a manifest, makes its
tf.data streams, and says what to compile, what to monitor and what to serve.
"""

import importlib
import inspect

from tfrecords import UserError

# name -> module; explicit, and imported only when used.
TASKS = {
    "cdiscount": "yt8m_keras.tasks.cdiscount",
    "yt8m_video": "yt8m_keras.tasks.yt8m_video",
    "yt8m_segment": "yt8m_keras.tasks.yt8m_segment",
}


def get_task(name: str):
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return importlib.import_module(TASKS[name])


def build_registered(recipe, reserved=(), **fixed):
    """Builds `recipe.model.name` from `MODELS` with `recipe.model.args` plus `fixed` arguments.

    An argument the builder does not take, or one the task sets itself (`reserved`, e.g.
    the number of classes, which comes from the data), is one UserError naming the key.
    """
    from yt8m_keras.models import MODELS

    if recipe.model.name not in MODELS:
        raise UserError(f"recipe key model.name: unknown model {recipe.model.name!r} "
                        f"(known: {', '.join(sorted(MODELS))})")
    builder = MODELS[recipe.model.name]
    accepted = set(inspect.signature(builder).parameters) - set(fixed) - set(reserved)
    for key in recipe.model.args:
        if key not in accepted:
            raise UserError(f"unknown recipe key model.args.{key} (known: {', '.join(sorted(accepted))})")
    try:
        return builder(**fixed, **recipe.model.args)
    except ValueError as e:
        raise UserError(f"recipe key model.args: {e}") from None
