"""Tasks: what the one trainer, exporter and predictor need to know about a competition.

A task names its record kind, builds its model from a recipe and a manifest, makes its
tf.data streams, and says what to compile, what to monitor and what to serve.
"""

import importlib
import inspect
import math

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
    parameters = inspect.signature(builder).parameters
    accepted = set(parameters) - set(fixed) - set(reserved)
    for key, value in recipe.model.args.items():
        if key not in accepted:
            raise UserError(f"unknown recipe key model.args.{key} (known: {', '.join(sorted(accepted))})")
        _check_like_default(f"model.args.{key}", value, parameters[key].default)
    try:
        return builder(**fixed, **recipe.model.args)
    except (ValueError, TypeError) as e:
        raise UserError(f"recipe key model.args: {e}") from None


def _check_like_default(key: str, value, default) -> None:
    """A model argument has its default's type (builders take plain ints, floats, bools, strings).

    Without this, `--set model.args.dropout=abc` reaches a Keras layer and fails deep in
    model building. A default of None accepts anything; an int is accepted for a float.
    """
    if default is inspect.Parameter.empty or default is None:
        return
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(f"recipe key {key}: expected {expected.__name__} (like its default {default!r}), "
                        f"got {value!r}")
    if expected is float and not math.isfinite(value):
        raise UserError(f"recipe key {key}: must be a finite number, got {value}")
