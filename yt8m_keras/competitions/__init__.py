"""The competitions registry, and the interface every competition provides.

The shared core (cli, train, export, recipes, models, data) names no competition: it reaches
one only through this registry, an explicit dict of name -> module path, imported when used.
Adding a competition adds a folder here, one line in `COMPETITIONS`, a record kind in
`tfrecords/`, a Beam job if the raw format is new, a model file if the architecture is new,
and recipes; no shared file changes.

A competition is a package `yt8m_keras/competitions/<name>/` whose `competition.py` (the
module registered here) provides, kept light (heavy modules imported inside the functions):

    NAME            its registry name, e.g. "cdiscount".
    TASKS           {task name: module path}: the `task:` values its recipes use.
    CONVERTERS      {format name: (Beam job module, what it reads)}; the first is what
                    `yt8m-keras convert NAME` runs.
    PREDICT_OUTPUTS the names `predict --task` accepts for it (e.g. "products").
    DESCRIPTION     one line for `quickstart --help`.
    add_sample_flags(parser), sample(output, args) -> {name: path}
                    `yt8m-keras sample NAME`: raw data in the competition's native format.
    add_evaluate_flags(parser), evaluate(model_dir, data_dir, args) -> printable text
    add_predict_flags(parser), plan(model_paths, data_dir, args) -> yt8m_keras.inference.Plan
                    batch inference with exported models: the shards to read, the scorer,
                    the submission; `predict` runs it in one process, `predict --beam`
                    on Beam (beam_jobs.predict), and both write the same bytes.
    quickstart(workdir)
                    sample -> convert -> train (tiny) -> evaluate -> export -> predict.
    add_commands(subparsers)
                    optional: subcommands of its own (Avito's `features`, `lgbm`, `stack`),
                    each with `set_defaults(handler=...)`.

Flags are declared with `add_flag`, so two competitions may declare the same flag (say
`--tta`); the first declaration's help is shown.

A task module (one per `task:` value) provides what the one trainer and the one exporter use:

    MONITOR, MONITOR_MODE   the validation metric of the best checkpoint ("max"/"min").
    read_manifest(data_dir) the manifest, checked for the task's record kind.
    read_classes(data_dir)  the class rows (class_index, category_id, ...): usually the data's
                            classes.csv (`tfrecords.manifest.read_classes`).
    build_model(recipe, num_classes), set_stage(model, stage), compile_args()
    ASSETS                  optional: paths in the converted data (files or directories; or a
                            function of the recipe giving them) the model is built from, such
                            as a tokenizer; the trainer copies them into the run's directory
                            and calls build_model(recipe, num_classes, assets_dir=...).
    train_dataset(recipe, data_dir, global_batch, skip_batches=0)   endless, deterministic
    val_dataset(recipe, data_dir, global_batch)
    serving_signatures(model, recipe, classes), warmup_inputs(recipe)

Example:

>>> from yt8m_keras import competitions
>>> competitions.get("yt8m").NAME
'youtube8m'
>>> competitions.get_task("cdiscount").MONITOR
'val_accuracy'
"""

import argparse
import importlib
from types import ModuleType
from typing import Dict, List, Tuple

from tfrecords import UserError

COMPETITIONS: Dict[str, str] = {
    "avito": "yt8m_keras.competitions.avito.competition",
    "cdiscount": "yt8m_keras.competitions.cdiscount.competition",
    "melanoma": "yt8m_keras.competitions.melanoma.competition",
    "taxonomy": "yt8m_keras.competitions.taxonomy.competition",
    "youtube8m": "yt8m_keras.competitions.youtube8m.competition",
}
# Other accepted names (older command lines say `quickstart --recipe yt8m`).
ALIASES: Dict[str, str] = {"yt8m": "youtube8m"}


def register(name: str, module: str) -> None:
    """Adds a competition defined outside the package (a plugin, a test's toy competition)."""
    COMPETITIONS[name] = module


def names() -> List[str]:
    return sorted(COMPETITIONS)


def get(name: str) -> ModuleType:
    """The competition module registered as `name` (or an alias of it)."""
    name = ALIASES.get(name, name)
    if name not in COMPETITIONS:
        raise UserError(f"unknown competition {name!r} (known: {', '.join(names())})")
    return importlib.import_module(COMPETITIONS[name])


def all_competitions() -> List[ModuleType]:
    return [get(name) for name in names()]


def get_task(task: str) -> ModuleType:
    """The task module for a recipe's `task:` value, from whichever competition declares it."""
    return importlib.import_module(competition_of_task(task).TASKS[task])


def competition_of_task(task: str) -> ModuleType:
    for competition in all_competitions():
        if task in competition.TASKS:
            return competition
    known = sorted(t for c in all_competitions() for t in c.TASKS)
    raise UserError(f"unknown task {task!r} (known: {', '.join(known)})")


def converters() -> Dict[str, Tuple[str, str]]:
    """Every name `convert` accepts -> (Beam job module, what it reads).

    Format names (bson, frames) and competition names (and aliases) both work; a
    competition's name runs its first converter.
    """
    found: Dict[str, Tuple[str, str]] = {}
    for competition in all_competitions():
        found.update(competition.CONVERTERS)
        found[competition.NAME] = next(iter(competition.CONVERTERS.values()))
    for alias, name in ALIASES.items():
        if name in found:
            found[alias] = found[name]
    return found


def predict_outputs() -> Dict[str, ModuleType]:
    """`predict --task` values -> the competition that writes them."""
    return {output: c for c in all_competitions() for output in c.PREDICT_OUTPUTS}


def add_flag(parser: argparse.ArgumentParser, *flags: str, **kwargs) -> None:
    """`parser.add_argument`, unless another competition already declared the flag."""
    if any(flag in parser._option_string_actions for flag in flags):  # noqa: SLF001 -- argparse has no public lookup
        return
    parser.add_argument(*flags, **kwargs)
