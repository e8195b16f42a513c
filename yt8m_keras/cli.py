"""The `yt8m-keras` command line: sample, convert, quickstart (and the steps that follow).

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
CONVERTERS = {
    # format -> (Beam job module, what it reads)
    "bson": ("beam_jobs.bson_to_tfrecords", "Cdiscount BSON files"),
}
SAMPLES = ("cdiscount",)


def _add_sample(subparsers) -> None:
    parser = subparsers.add_parser("sample", help="write sample raw data in a competition's native format")
    parser.add_argument("dataset", choices=SAMPLES)
    parser.add_argument("--output", required=True, help="directory to write into")
    parser.add_argument("--products", type=_positive_int, default=400, help="labelled products (default 400)")
    parser.add_argument("--classes", type=_positive_int, default=8, help="categories (default 8)")
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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    _add_sample(subparsers)
    _add_convert(subparsers)
    _add_quickstart(subparsers)
    return parser


def _sample(args) -> None:
    from yt8m_keras.sample import cdiscount

    paths = cdiscount.write_sample(args.output, products=args.products, classes=args.classes, seed=args.seed)
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


def _quickstart(args) -> None:
    from yt8m_keras.sample import cdiscount

    raw = os.path.join(args.workdir, "raw")
    data = os.path.join(args.workdir, "data")
    print(f"[1/2] sample Cdiscount BSON -> {raw}")
    paths = cdiscount.write_sample(raw, products=400, classes=8, seed=0)
    print(f"[2/2] convert with Beam -> {data}")
    manifest, summary = convert("bson", [
        "--input", paths["train"], "--input", paths["test"], "--categories", paths["categories"],
        "--output", data, "--overwrite"])
    print(summary(manifest, data))


def main(argv: Optional[List[str]] = None) -> int:
    def dispatch(argv):
        args = build_parser().parse_args(argv)
        args.handler(args)

    return run_main(dispatch, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
