"""The `yt8m-keras` command line: sample, convert, train, export, evaluate, predict, quickstart.

User errors (a missing file, a bad flag, a bad config) print one `error:` line and
exit 2; a traceback means a bug. Heavy imports (TensorFlow, Beam) happen inside the
subcommands, so `--help` and flag errors answer at once.
"""

import argparse
import os
import shutil
import sys
from typing import List, Optional

from tfrecords.errors import ArgumentParser, UserError, run_main

PROG = "yt8m-keras"
CONVERTERS = {
    # format -> (Beam job module, what it reads)
    "bson": ("beam_jobs.bson_to_tfrecords", "Cdiscount BSON files"),
    "frames": ("beam_jobs.frames_to_tfrecords", "YouTube-8M frame-level records, official or MediaPipe"),
}
SAMPLES = ("cdiscount", "yt8m")
QUICKSTART_RECIPE = "cdiscount_xception:tiny"
QUICKSTART_PRODUCTS = 1000
QUICKSTART_CLASSES = 8
QUICKSTART_TTA = 4


def _add_sample(subparsers) -> None:
    parser = subparsers.add_parser("sample", help="write sample raw data in a competition's native format")
    parser.add_argument("dataset", choices=SAMPLES)
    parser.add_argument("--output", required=True, help="directory to write into")
    parser.add_argument("--products", type=_positive_int, default=400,
                        help="cdiscount: labelled products (default 400)")
    parser.add_argument("--videos", type=_positive_int, default=300, help="yt8m: videos per split (default 300)")
    parser.add_argument("--classes", type=_positive_int, help="categories (default: cdiscount 8, yt8m 20)")
    parser.add_argument("--segment-classes", type=_positive_int, default=10,
                        help="yt8m: classes rated at segment level (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_sample)


def _add_convert(subparsers) -> None:
    formats = ", ".join(f"{name} ({what})" for name, (_, what) in CONVERTERS.items())
    parser = subparsers.add_parser(
        "convert", help="convert raw data to sharded TFRecords with a Beam job",
        description=f"Runs a Beam conversion job. Formats: {formats}. "
                    f"`{PROG} convert FORMAT --help` lists the job's flags; Beam pipeline flags pass through.")
    parser.add_argument("format", choices=sorted(CONVERTERS))
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
    parser.add_argument("--version", type=_positive_int, help="default: one more than the highest present")
    parser.set_defaults(handler=_export)


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="top-1 per combination rule, with and without TTA")
    parser.add_argument("--model-dir", required=True, help="a directory written by `train`")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--split", default="val")
    parser.add_argument("--tta", type=_non_negative_int, default=0, help="augmented copies per image (0: none)")
    parser.set_defaults(handler=_evaluate)


def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="write a Kaggle submission with an exported model")
    parser.add_argument("--model", required=True, help="an exported SavedModel: BASE/NAME/VERSION")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", required=True, help="the CSV to write")
    parser.add_argument("--combine", default="power:0.1", help="per-product rule: first, mean, product, rms, "
                        "median, power[:A], max (default power:0.1)")
    parser.add_argument("--tta", type=_non_negative_int, default=0, help="augmented copies per image (0: none)")
    parser.set_defaults(handler=_predict)


def _add_quickstart(subparsers) -> None:
    parser = subparsers.add_parser("quickstart", help="the whole pipeline on generated sample data")
    parser.add_argument("--workdir", default="yt8m_quickstart", help="where everything is written")
    parser.set_defaults(handler=_quickstart)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


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
    return parser


def _sample(args) -> None:
    if args.dataset == "cdiscount":
        from yt8m_keras.sample import cdiscount

        paths = cdiscount.write_sample(args.output, products=args.products, classes=args.classes or 8,
                                       seed=args.seed)
    else:
        from yt8m_keras.sample import yt8m

        classes = args.classes or 20
        if args.segment_classes > classes:
            raise UserError(f"--segment-classes ({args.segment_classes}) cannot exceed --classes ({classes})")
        paths = yt8m.write_sample(args.output, videos=args.videos, classes=classes,
                                  segment_classes=args.segment_classes, seed=args.seed)
    for name, path in paths.items():
        print(f"{name:<11} {path}")


def convert(fmt: str, job_args: List[str]):
    """Runs the conversion job of `fmt` in this process; returns its manifest."""
    import importlib

    from beam_jobs import common

    module, _ = CONVERTERS[fmt]
    manifest = importlib.import_module(module).run(job_args, prog=f"{PROG} convert {fmt}")
    return manifest, common.summary


def _convert(args) -> None:
    manifest, summary = convert(args.format, args.job_args)
    print(summary(manifest))


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
    from yt8m_keras.predict import evaluate

    print(evaluate(args.model_dir, args.data, tta=args.tta, split=args.split)["text"])


def _predict(args) -> None:
    from yt8m_keras.predict import predict

    products = predict(args.model, args.data, args.output, split=args.split, rule=args.combine, tta=args.tta)
    print(f"wrote {args.output}: {products} products")


def _quickstart(args) -> None:
    """sample -> convert -> train (tiny) -> export -> evaluate -> predict, on CPU in minutes."""
    from yt8m_keras.export import export
    from yt8m_keras.predict import evaluate, predict
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.sample import cdiscount
    from yt8m_keras.train import train

    raw, data, model_dir, exports = (os.path.join(args.workdir, d) for d in ("raw", "data", "model", "export"))
    print(f"[1/6] sample Cdiscount BSON -> {raw}")
    paths = cdiscount.write_sample(raw, products=QUICKSTART_PRODUCTS, classes=QUICKSTART_CLASSES, seed=0)
    print(f"[2/6] convert with Beam -> {data}")
    manifest, summary = convert("bson", [
        "--input", paths["train"], "--input", paths["test"], "--categories", paths["categories"],
        "--output", data, "--overwrite"])
    print(summary(manifest, data))
    print(f"[3/6] train {QUICKSTART_RECIPE} -> {model_dir}")
    if os.path.isdir(model_dir):
        shutil.rmtree(model_dir)  # a fresh run: the data were just rewritten
    train(load_recipe(QUICKSTART_RECIPE), data, model_dir, verbose=2)
    print(f"[4/6] export -> {exports}")
    path = export(model_dir, exports)
    print(f"[5/6] evaluate on the val split (TTA x{QUICKSTART_TTA})")
    print(evaluate(model_dir, data, tta=QUICKSTART_TTA)["text"])
    submission = os.path.join(args.workdir, "submission.csv")
    print(f"[6/6] predict the test split with the SavedModel -> {submission}")
    products = predict(path, data, submission)
    print(f"\nexported model: {path}\nsubmission: {submission} ({products} products)")


def main(argv: Optional[List[str]] = None) -> int:
    def dispatch(argv):
        args = build_parser().parse_args(argv)
        args.handler(args)

    return run_main(dispatch, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
