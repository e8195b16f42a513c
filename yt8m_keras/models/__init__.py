"""Model families, one per file, and the registry tasks look builders up in.

The registry is an explicit dict (name -> builder) rather than decorator registration, so
what is available is visible here and importing a module never changes it.
"""

import inspect
import math

from tfrecords import UserError
from yt8m_keras.models.avito_network import build_avito_network
from yt8m_keras.models.dbof import build_dbof_video_model, build_gated_dbof_video_model
from yt8m_keras.models.efficientnet import build_efficientnet
from yt8m_keras.models.lstm_language_model import build_lstm_language_model
from yt8m_keras.models.nextvlad import build_nextvlad_video_model
from yt8m_keras.models.segment import build_context_agnostic_segment_model, build_context_aware_segment_model
from yt8m_keras.models.t5 import build_t5
from yt8m_keras.models.xception import build_xception

MODELS = {
    # Cdiscount: images -> softmax over categories.
    "xception": build_xception,
    # Melanoma: images (+ a metadata vector) -> softmax over diagnosis classes.
    "efficientnet": build_efficientnet,
    # YouTube-8M video level: {rgb, audio, mask} -> sigmoid per class.
    "nextvlad": build_nextvlad_video_model,
    "dbof": build_dbof_video_model,
    "gated_dbof": build_gated_dbof_video_model,
    # YouTube-8M segment level, built from a pretrained video-level model.
    "segment_agnostic": build_context_agnostic_segment_model,
    "segment_aware": build_context_aware_segment_model,
    # Avito: an LSTM language model over the ads' text, then text + picture features +
    # categories + numbers -> deal_probability.
    "lstm_language_model": build_lstm_language_model,
    "avito_network": build_avito_network,
    # Taxonomy: receipt text -> "supergroup > group > module | brand" (KerasHub T5).
    "t5": build_t5,
}


def build_registered(recipe, reserved=(), resolved=None, **fixed):
    """Builds `recipe.model.name` from `MODELS` with `recipe.model.args` plus `fixed` arguments.

    An argument the builder does not take, or one the task sets itself (`reserved`, e.g.
    the number of classes, which comes from the data), is one UserError naming the key.
    `resolved` replaces recipe arguments by what the task made of them (a run directory
    resolved to its weights file), after they were checked.
    """
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
        return builder(**fixed, **{**recipe.model.args, **(resolved or {})})
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


def apply_stage(set_trainable_stage, model, stage: str) -> None:
    """Calls a model family's `set_trainable_stage`, with an unknown stage as one UserError."""
    try:
        set_trainable_stage(model, stage)
    except ValueError as e:
        raise UserError(f"recipe key training.stages: {e}") from None
