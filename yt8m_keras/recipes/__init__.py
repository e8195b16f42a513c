"""Recipes: a competition's way of training, as a YAML file validated into frozen dataclasses.

    yt8m-keras train --recipe cdiscount_xception        # the full recipe
    yt8m-keras train --recipe cdiscount_xception:tiny   # its tiny variant (tests, quickstart)
    yt8m-keras train --recipe my_recipe.yaml --set training.batch_size=32

A recipe file holds the sections below and an optional `tiny:` mapping of overrides
(same structure) applied on top for the tiny variant. An unknown key or a value of the
wrong type is one UserError naming the key.
"""

import dataclasses
import math
import os
import typing
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from tfrecords import UserError

RECIPES_DIR = os.path.dirname(__file__)
# Seeds feed NumPy and TensorFlow generators, which take unsigned 32-bit seeds.
MAX_SEED = 2**32 - 1


def yaml_error(error: yaml.YAMLError) -> str:
    """A YAML error as one line: the problem and where (PyYAML's own message spans lines)."""
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{getattr(error, 'problem', None) or error}{where}"


def safe_load(text: str):
    """Parses recipe YAML: `yaml.safe_load`, refusing aliases first.

    A few nested anchors and aliases (a "billion laughs" document) expand into gigabytes
    when the recipe is validated and saved; recipes never need them. The event scan stops
    at the first alias, before anything is built.
    """
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.MarkedYAMLError(problem="aliases (*name) are not allowed in recipes",
                                       problem_mark=event.start_mark)
    return yaml.safe_load(text)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("step", "warmup_linear", "warmup_cosine", "slanted_triangular")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`name` picks a builder in `yt8m_keras.models.MODELS`; `args` are its keyword arguments."""

    name: str
    args: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Input settings; each task reads the fields that concern it."""

    train_split: str = "train"
    val_split: str = "val"
    shuffle_buffer: int = 8192
    # Images (cdiscount).
    image_size: int = 180
    augment: bool = True
    # Frames (yt8m): frames kept per video; frames each side of a 5 s segment; the loss
    # weight of mined negatives; the share of rated videos held out for validation.
    max_frames: int = 300
    context_frames: int = 3
    negative_weight: float = 0.1
    holdout_fraction: float = 0.2
    # Cross-validation (melanoma): the fold held out for validation, of how many.
    fold: int = 0
    folds: int = 5
    # Avito: tokens of title + description; which CNN features the network reads
    # ("center", "pad", or "" for none).
    text_length: int = 100
    image_features: str = ""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How to train. Steps are micro-batches (what `fit` counts); updates are optimizer steps.

    batch_size is per replica: the global micro-batch is batch_size x replicas, and an
    update sees batch_size x replicas x accumulation_steps examples.
    """

    batch_size: int = 64
    accumulation_steps: int = 1
    epochs: int = 10
    steps_per_epoch: int = 1000
    validation_steps: Optional[int] = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    # "step": multiply the rate by lr_decay_factor at each of lr_decay_epochs;
    # "warmup_linear": rise linearly for warmup_epochs, then fall linearly to 0;
    # "warmup_cosine": rise linearly from warmup_start x the rate for warmup_epochs, then
    # follow a cosine to 0 at the last epoch.
    schedule: str = "step"
    lr_decay_epochs: List[int] = dataclasses.field(default_factory=list)
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0
    # Gradient clipping by global norm (0: none), applied to the accumulated gradient.
    clipnorm: float = 0.0
    # Variable path prefix -> learning-rate multiplier (e.g. a segment encoder's lower rate).
    lr_multipliers: Dict[str, float] = dataclasses.field(default_factory=dict)
    # epoch -> trainable stage, e.g. {0: top, 1: blocks10+, 3: full}.
    stages: Dict[int, str] = dataclasses.field(default_factory=lambda: {0: "full"})
    precision: str = "float32"
    seed: int = 0
    backup_every_steps: int = 100


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    top_k: int = 5
    # How the `products` signature combines a product's images: mean or power:A.
    combine: str = "power:0.1"
    # Sequence outputs (taxonomy): beams of the serving signature's constrained decoding,
    # and the fixed batch its generation runs in (larger requests run in chunks of it).
    beams: int = 4
    batch_size: int = 16


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    model: ModelConfig
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)


def _check_type(key: str, value: Any, annotation) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _check_type(key, value, next(a for a in args if a is not type(None)))
    if origin in (list, List, Sequence):
        if not isinstance(value, list):
            raise UserError(f"recipe key {key}: expected a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin in (dict, Dict, Mapping):
        if not isinstance(value, dict):
            raise UserError(f"recipe key {key}: expected a mapping, got {value!r}")
        return {_check_type(f"{key} (a key)", k, args[0]): _check_type(f"{key}.{k}", v, args[1])
                for k, v in value.items()}
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads 1e-4 as a string: it wants 1.0e-4.
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, annotation) or (annotation is int and isinstance(value, bool)):
        raise UserError(f"recipe key {key}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls, values: Mapping, prefix: str):
    if not isinstance(values, Mapping):
        raise UserError(f"recipe key {prefix or '(top level)'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise UserError(f"unknown recipe key {prefix}{key} (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for key, value in values.items():
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(prefix + key, value, annotation)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"recipe is missing {', '.join(prefix + m for m in missing)}")
    return cls(**kwargs)


def merge(base: Mapping, overrides: Mapping) -> Dict:
    """Deep merge: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "stages":
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_set(assignments: Sequence[str]) -> Dict:
    """`["training.batch_size=64"]` -> `{"training": {"batch_size": 64}}` (values parsed as YAML)."""
    overrides: Dict = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {assignment!r}")
        try:
            value = safe_load(text)
        except yaml.YAMLError as e:
            raise UserError(f"--set {key}: value is not valid YAML: {yaml_error(e)}") from None
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return overrides


def recipe_path(name: str) -> Tuple[str, Optional[str]]:
    """`name[:variant]` -> (path of the YAML file, variant); a name is a packaged recipe or a path."""
    base, _, variant = name.partition(":")
    path = base if base.endswith((".yaml", ".yml")) else os.path.join(RECIPES_DIR, base + ".yaml")
    if not os.path.exists(path):
        known = sorted(f[:-5] for f in os.listdir(RECIPES_DIR) if f.endswith(".yaml"))
        raise UserError(f"recipe not found: {base} (packaged recipes: {', '.join(known)})")
    return path, variant or None


def load_recipe(name: str, overrides: Sequence[str] = ()) -> Recipe:
    """Loads `name[:variant]`, applies `--set` overrides and validates every field."""
    path, variant = recipe_path(name)
    values = read_yaml(path)
    if not isinstance(values, dict):
        raise UserError(f"{path}: a recipe is a mapping of sections")
    variants = {key: values.pop(key) for key in ("tiny",) if key in values}
    if variant is not None:
        if variant not in variants:
            raise UserError(f"recipe {name}: no variant {variant!r} (it has: {', '.join(variants) or 'none'})")
        values = merge(values, variants[variant])
    values = merge(values, parse_set(overrides))
    values.setdefault("name", os.path.splitext(os.path.basename(path))[0] + (f":{variant}" if variant else ""))
    recipe = _build(Recipe, values, "")
    _check_values(recipe)
    return recipe


def read_yaml(path: str):
    """A recipe file's contents; a file that is not UTF-8 or not valid YAML is one UserError."""
    try:
        if "://" in path:  # a recipe saved beside a model on gs:// (or another TensorFlow file system)
            import tensorflow as tf

            with tf.io.gfile.GFile(path, "rb") as f:
                text = f.read().decode("utf-8")
        else:  # no TensorFlow for a local file: recipes load under any Keras backend
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e}") from None
    try:
        return safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {yaml_error(e)}") from None


def recipe_from_dict(values: Mapping) -> Recipe:
    """Rebuilds a Recipe from `Recipe.to_dict()` (the copy saved in a model directory)."""
    recipe = _build(Recipe, values, "")
    _check_values(recipe)
    return recipe


def _check_finite(config, prefix: str) -> None:
    """Every float of a section (and of its lists and mappings) is finite: `nan` trains NaN weights."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise UserError(f"recipe key {prefix}.{field.name}: must be a finite number, got {v}")


def _check_values(recipe: Recipe) -> None:
    t, d = recipe.training, recipe.data
    for section in ("data", "training", "export"):
        _check_finite(getattr(recipe, section), section)
    at_least = {
        1: {"training.batch_size": t.batch_size, "training.accumulation_steps": t.accumulation_steps,
            "training.epochs": t.epochs, "training.steps_per_epoch": t.steps_per_epoch,
            "training.backup_every_steps": t.backup_every_steps, "data.image_size": d.image_size,
            "export.top_k": recipe.export.top_k, "export.beams": recipe.export.beams,
            "export.batch_size": recipe.export.batch_size, "data.shuffle_buffer": d.shuffle_buffer,
            "data.max_frames": d.max_frames, "data.folds": d.folds, "data.text_length": d.text_length},
        0: {"training.seed": t.seed, "data.context_frames": d.context_frames, "data.fold": d.fold,
            "training.warmup_start": t.warmup_start,
            "training.warmup_epochs": t.warmup_epochs, "training.clipnorm": t.clipnorm,
            "data.negative_weight": d.negative_weight},
    }
    for minimum, values in at_least.items():
        for key, value in values.items():
            if value < minimum:
                raise UserError(f"recipe key {key}: must be at least {minimum}, got {value}")
    if t.validation_steps is not None and t.validation_steps < 1:
        raise UserError(f"recipe key training.validation_steps: must be at least 1, got {t.validation_steps}")
    if t.seed > MAX_SEED:
        raise UserError(f"recipe key training.seed: must be at most {MAX_SEED}, got {t.seed}")
    if t.schedule not in SCHEDULES:
        raise UserError(f"recipe key training.schedule: one of {', '.join(SCHEDULES)}, got {t.schedule!r}")
    if not 0 <= d.holdout_fraction < 1:
        raise UserError(f"recipe key data.holdout_fraction: must be in [0, 1), got {d.holdout_fraction}")
    if t.precision not in PRECISIONS:
        raise UserError(f"recipe key training.precision: one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if 0 not in t.stages:
        raise UserError("recipe key training.stages: must say which stage epoch 0 trains")
    if any(epoch < 0 for epoch in list(t.stages) + list(t.lr_decay_epochs)):
        raise UserError("recipe keys training.stages and training.lr_decay_epochs: epochs must be >= 0")
    for key, value in {"training.learning_rate": t.learning_rate, "training.lr_decay_factor": t.lr_decay_factor}.items():
        if value <= 0:
            raise UserError(f"recipe key {key}: must be positive, got {value}")
    for prefix, value in t.lr_multipliers.items():  # 0 freezes those variables
        if value < 0:
            raise UserError(f"recipe key training.lr_multipliers.{prefix}: must be >= 0, got {value}")
