"""The `yt8m-keras` command line: sample, convert, train, export, evaluate, predict, quickstart.

It names no competition: `sample`, `convert`, `evaluate`, `predict` and `quickstart` find the
competition through `yt8m_keras.competitions` (by name, or from the model's recipe), and each
competition adds its own flags to those commands.

User errors (a missing file, a bad flag, a bad config) print one `error:` line and
exit 2; a traceback means a bug. Heavy imports (TensorFlow, Beam) happen inside the
subcommands, so `--help` and flag errors answer at once.
"""

import argparse
import os
import sys
from typing import List, Optional

from tfrecords.errors import ArgumentParser, UserError, run_main

PROG = "yt8m-keras"


def _add_sample(subparsers) -> None:
    from yt8m_keras import competitions

    parser = subparsers.add_parser("sample", help="write sample raw data in a competition's native format")
    parser.add_argument("competition", choices=competitions.names() + sorted(competitions.ALIASES))
    parser.add_argument("--output", required=True, help="directory to write into")
    parser.add_argument("--seed", type=int, default=0)
    for competition in competitions.all_competitions():
        competition.add_sample_flags(parser)
    parser.set_defaults(handler=_sample)


def _add_convert(subparsers) -> None:
    from yt8m_keras import competitions

    jobs = competitions.converters()
    formats = ", ".join(f"{name} ({what})" for name, (_, what) in sorted(jobs.items()))
    parser = subparsers.add_parser(
        "convert", help="convert raw data to sharded TFRecords with a Beam job",
        description=f"Runs a Beam conversion job, named by competition or by format: {formats}. "
                    f"`{PROG} convert NAME --help` lists the job's flags; Beam pipeline flags pass through.")
    parser.add_argument("format", choices=sorted(jobs),
                        help="a competition or a raw format: " + ", ".join(sorted(jobs)))
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="the job's flags")
    parser.set_defaults(handler=_convert)


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a recipe on converted data (resumes after preemption)")
    parser.add_argument("--recipe", required=True, help="a packaged recipe (e.g. cdiscount_xception, "
                        "cdiscount_xception:tiny) or a YAML file")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--model-dir", required=True, help="checkpoints, logs and the resolved recipe go here")
    parser.add_argument("--strategy", default="default", help="default, mirrored, multi_worker or tpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. training.batch_size=32 (repeatable)")
    parser.set_defaults(handler=_train)


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser("export", help="write a SavedModel for TF Serving: BASE/NAME/VERSION")
    parser.add_argument("--model-dir", required=True, help="a directory written by `train`")
    parser.add_argument("--export-dir", required=True, help="TF Serving's model base path")
    parser.add_argument("--name", help="model name (default: the recipe's task)")
    parser.add_argument("--version", type=positive_int, help="default: one more than the highest present")
    parser.set_defaults(handler=_export)


def _add_evaluate(subparsers) -> None:
    from yt8m_keras import competitions

    parser = subparsers.add_parser("evaluate", help="the competition's metrics on held-out data, with a baseline "
                                   "beside them (the competition is the one the model was trained for)")
    parser.add_argument("--model-dir", required=True, help="a directory written by `train`")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--split", default="val")
    for competition in competitions.all_competitions():
        competition.add_evaluate_flags(parser)
    parser.set_defaults(handler=_evaluate)


def _add_predict(subparsers) -> None:
    from yt8m_keras import competitions

    parser = subparsers.add_parser("predict", help="write a submission with exported models")
    parser.set_defaults(handler=_predict)
    outputs = competitions.predict_outputs()
    parser.add_argument("--model", action="append", required=True,
                        help="an exported SavedModel: BASE/NAME/VERSION (repeat to combine models where the "
                        "competition does)")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", required=True, help="the submission file to write")
    parser.add_argument("--task", choices=sorted(outputs), help="what to write: " + ", ".join(
        f"{output} ({competition.NAME})" for output, competition in sorted(outputs.items()))
        + "; default: what the first model was trained for")
    for competition in competitions.all_competitions():
        competition.add_predict_flags(parser)
    parser.add_argument("--beam", action="store_true", help="run on Beam (RunInference; the same file): Beam "
                        "pipeline flags may follow (--runner DataflowRunner ...; default the local FnApiRunner)")


def predict_plan(args):
    """The competition's batch-inference plan for parsed `predict` flags (see `yt8m_keras.inference`)."""
    from yt8m_keras import competitions

    if args.task:
        competition = competitions.predict_outputs()[args.task]
    else:
        competition = competitions.competition_of_task(_exported_task(args.model[0]))
    return competition.plan(args.model, args.data, args)


def _add_quickstart(subparsers) -> None:
    from yt8m_keras import competitions

    listed = "; ".join(f"{c.NAME}: {c.DESCRIPTION}" for c in competitions.all_competitions())
    parser = subparsers.add_parser("quickstart", help="the whole pipeline on generated sample data")
    parser.add_argument("--recipe", choices=competitions.names() + sorted(competitions.ALIASES),
                        default="cdiscount", help=f"the competition (default cdiscount). {listed}")
    parser.add_argument("--workdir", default="yt8m_quickstart", help="where everything is written")
    parser.set_defaults(handler=_quickstart)


def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, with a message that says so."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    _add_sample(subparsers)
    _add_convert(subparsers)
    _add_train(subparsers)
    _add_export(subparsers)
    _add_evaluate(subparsers)
    _add_predict(subparsers)
    _add_quickstart(subparsers)
    from yt8m_keras import competitions

    for competition in competitions.all_competitions():  # commands a competition needs beyond these
        if hasattr(competition, "add_commands"):
            competition.add_commands(subparsers)
    return parser


def _sample(args) -> None:
    from yt8m_keras import competitions

    _output_directory(args.output, "--output")
    paths = competitions.get(args.competition).sample(args.output, args)
    for name, path in paths.items():
        print(f"{name:<11} {path}")


def _convert(args) -> None:
    from yt8m_keras.convert import convert, summary

    print(summary(convert(args.format, args.job_args)))


def _train(args) -> None:
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    recipe = load_recipe(args.recipe, args.set)
    result = train(recipe, args.data, args.model_dir, strategy=args.strategy)
    print(f"trained {recipe.name}: {result['step']} steps; checkpoints in {args.model_dir}")


def _export(args) -> None:
    from yt8m_keras.export import export

    print(f"exported {export(args.model_dir, args.export_dir, args.name, args.version)}")


def _evaluate(args) -> None:
    from yt8m_keras import competitions
    from yt8m_keras.train import trained_task

    print(competitions.competition_of_task(trained_task(args.model_dir)).evaluate(args.model_dir, args.data, args))


def _predict(args) -> None:
    from yt8m_keras.inference import run_beam, run_local

    if args.beam:  # before any work: a misspelt Beam flag would otherwise only be logged by Beam
        from beam_jobs.common import check_pipeline_args

        check_pipeline_args(args.pipeline_args)
    if "://" not in args.output:  # gs:// and other file systems are checked by the writer
        output_file(args.output, "--output")
    plan = predict_plan(args)
    done = run_beam(plan, args.output, args.pipeline_args) if args.beam else run_local(plan, args.output)
    print(done["text"])


def _exported_task(model_path: str) -> str:
    """The recipe task an exported model (BASE/NAME/VERSION) was trained for."""
    from yt8m_keras.recipes import read_yaml

    path = os.path.join(model_path, "assets.extra", "recipe.yaml")
    if not os.path.exists(path):
        raise UserError(f"no SavedModel in {model_path} (expected BASE/NAME/VERSION from `yt8m-keras export`)")
    values = read_yaml(path)
    task = values.get("task") if isinstance(values, dict) else None
    if not isinstance(task, str):
        raise UserError(f"{path} names no task")
    return task


def _quickstart(args) -> None:
    """sample -> convert -> train (tiny) -> export -> evaluate -> predict, on CPU in minutes."""
    from yt8m_keras import competitions

    _output_directory(args.workdir, "--workdir")
    competitions.get(args.recipe).quickstart(args.workdir)


def _output_directory(path: str, flag: str) -> str:
    """Creates the directory a command writes into; a file in the way is one UserError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, expected a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {flag} {path}: {e.strerror or e}") from None
    return path


def output_file(path: str, flag: str) -> str:
    """Checks, before any work, that a file can be written at `path` (its directory exists)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory, expected a file name")
    if not os.path.isdir(directory):
        raise UserError(f"{flag} {path}: directory {directory} does not exist")
    return path


def predict_on_beam(argv: Optional[List[str]] = None) -> int:
    """`python -m beam_jobs.predict ARGS` (setup.cfg's entry point): `yt8m-keras predict --beam ARGS`."""
    return main(["predict", "--beam", *(sys.argv[1:] if argv is None else argv)])


def main(argv: Optional[List[str]] = None) -> int:
    def dispatch(argv):
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "beam", False):
            parser.parse_args(argv)  # argparse's own error for the flags it does not know
        args.pipeline_args = extra  # `predict --beam`: Beam's flags, checked by the job
        try:
            args.handler(args)
        except Exception as e:
            # tf.data names no file in "corrupted record at N": find the shard and name it.
            if type(e).__name__ == "DataLossError" and getattr(args, "data", None):
                from yt8m_keras.data.shards import corrupt_shard

                raise UserError(corrupt_shard(args.data, e)) from None
            raise

    return run_main(dispatch, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
