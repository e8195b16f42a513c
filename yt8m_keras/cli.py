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
PREDICT_TASKS = ("products", "segments", "videos")
QUICKSTART_RECIPE = "cdiscount_xception:tiny"
QUICKSTART_PRODUCTS = 1000
QUICKSTART_CLASSES = 8
QUICKSTART_TTA = 4
QUICKSTART_VIDEOS = 600


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
    parser = subparsers.add_parser("evaluate", help="Cdiscount: top-1 per combination rule, with and without TTA; "
                                   "YouTube-8M: GAP@20, Hit@1, PERR, mAP, segment MAP@K")
    parser.add_argument("--model-dir", required=True, help="a directory written by `train`")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--split", default="val")
    parser.add_argument("--tta", type=_non_negative_int, default=0, help="augmented copies per image (0: none)")
    parser.set_defaults(handler=_evaluate)


def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="write a Kaggle submission with exported models")
    parser.add_argument("--model", action="append", required=True,
                        help="an exported SavedModel: BASE/NAME/VERSION (repeat to average YouTube-8M models)")
    parser.add_argument("--data", required=True, help="a directory written by `convert`")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", required=True, help="the CSV to write")
    parser.add_argument("--task", choices=PREDICT_TASKS, help="products (Cdiscount), segments or videos "
                        "(YouTube-8M); default: what the first model was trained for")
    parser.add_argument("--combine", default="power:0.1", help="products: per-product rule: first, mean, "
                        "product, rms, median, power[:A], max (default power:0.1)")
    parser.add_argument("--tta", type=_non_negative_int, default=0, help="products: augmented copies per image")
    parser.add_argument("--k", type=_positive_int, default=100_000, help="segments: segments kept per class")
    parser.add_argument("--drop-first", type=_non_negative_int, default=0, help="segments: skip each video's "
                        "first N segments")
    parser.add_argument("--drop-last", type=_non_negative_int, default=0, help="segments: skip each video's "
                        "last N segments")
    parser.add_argument("--top-k", type=_positive_int, default=20, help="videos: label/score pairs per video")
    parser.set_defaults(handler=_predict)


def _add_quickstart(subparsers) -> None:
    parser = subparsers.add_parser("quickstart", help="the whole pipeline on generated sample data")
    parser.add_argument("--recipe", choices=("cdiscount", "yt8m"), default="cdiscount",
                        help="cdiscount (default): BSON -> Xception; yt8m: frame records -> NeXtVLAD -> segments")
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


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


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
    _output_directory(args.output, "--output")
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
    from yt8m_keras.train import trained_task

    if trained_task(args.model_dir) == "cdiscount":
        from yt8m_keras.predict import evaluate

        print(evaluate(args.model_dir, args.data, tta=args.tta, split=args.split)["text"])
    else:
        from yt8m_keras import yt8m_predict

        print(yt8m_predict.evaluate(args.model_dir, args.data)["text"])


def _predict(args) -> None:
    _output_file(args.output, "--output")
    task = args.task or _exported_task(args.model[0])
    if task == "products":
        from yt8m_keras.predict import predict

        if len(args.model) > 1:
            raise UserError("products: give one --model")
        count = predict(args.model[0], args.data, args.output, split=args.split, rule=args.combine, tta=args.tta)
        print(f"wrote {args.output}: {count} products")
        return
    from yt8m_keras import yt8m_predict

    if task == "segments":
        count = yt8m_predict.predict_segments(args.model, args.data, args.output, split=args.split, k=args.k,
                                              drop_first=args.drop_first, drop_last=args.drop_last)
        print(f"wrote {args.output}: {count} segments scored, the best {args.k} per class kept")
    else:
        count = yt8m_predict.predict_videos(args.model, args.data, args.output, split=args.split, top_k=args.top_k)
        print(f"wrote {args.output}: {count} videos")


def _exported_task(model_path: str) -> str:
    """products, segments or videos: what the exported model's recipe trained it for."""
    from yt8m_keras.recipes import read_yaml

    path = os.path.join(model_path, "assets.extra", "recipe.yaml")
    if not os.path.exists(path):
        raise UserError(f"no SavedModel in {model_path} (expected BASE/NAME/VERSION from `yt8m-keras export`)")
    values = read_yaml(path)
    task = values.get("task") if isinstance(values, dict) else None
    return {"cdiscount": "products", "yt8m_segment": "segments", "yt8m_video": "videos"}.get(task, "products")


def _quickstart(args) -> None:
    """sample -> convert -> train (tiny) -> export -> evaluate -> predict, on CPU in minutes."""
    _output_directory(args.workdir, "--workdir")
    if args.recipe == "yt8m":
        return _quickstart_yt8m(args.workdir)
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


def _quickstart_yt8m(workdir: str) -> None:
    """sample -> convert -> pretrain NeXtVLAD -> fine-tune segments -> evaluate -> export -> predict."""
    from yt8m_keras import yt8m_predict
    from yt8m_keras.export import export
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.sample import yt8m
    from yt8m_keras.train import train
    from yt8m_keras.yt8m_metrics import ranked_segment_map_at_k
    from yt8m_keras.segment_topk import read_segment_submission

    raw, data, video_dir, segment_dir, exports = (
        os.path.join(workdir, d) for d in ("yt8m_raw", "yt8m_data", "yt8m_video", "yt8m_segment", "yt8m_export"))
    print(f"[1/7] sample YouTube-8M frame-level records -> {raw}")
    paths = yt8m.write_sample(raw, videos=QUICKSTART_VIDEOS, seed=0)
    print(f"[2/7] convert with Beam, keeping the segment vocabulary -> {data}")
    manifest, summary = convert("frames", [
        "--input", paths["train"], "--input", paths["validate"], "--input", paths["test"],
        "--vocabulary", paths["segment_vocabulary"], "--classes", paths["vocabulary"],
        "--output", data, "--overwrite"])
    print(summary(manifest, data))
    for directory in (video_dir, segment_dir):
        if os.path.isdir(directory):
            shutil.rmtree(directory)  # a fresh run: the data were just rewritten
    print(f"[3/7] pretrain yt8m_nextvlad:tiny at video level -> {video_dir}")
    train(load_recipe("yt8m_nextvlad:tiny"), data, video_dir, verbose=2)
    print(f"[4/7] fine-tune yt8m_segment_agnostic:tiny on rated segments -> {segment_dir}")
    train(load_recipe("yt8m_segment_agnostic:tiny", [f"model.args.pretrained={video_dir}"]), data, segment_dir,
          verbose=2)
    print("[5/7] evaluate on held-out validate videos")
    print(yt8m_predict.evaluate(video_dir, data)["text"].replace("segment MAP", "pretrained: segment MAP"))
    print(yt8m_predict.evaluate(segment_dir, data)["text"].replace("segment MAP", "fine-tuned: segment MAP"))
    print(f"[6/7] export -> {exports}")
    video_model, segment_model = export(video_dir, exports, name="yt8m_video"), export(segment_dir, exports)
    submission = os.path.join(workdir, "yt8m_segments.csv")
    print(f"[7/7] predict every test segment, averaging both exported models -> {submission}")
    segments = yt8m_predict.predict_segments([segment_model, video_model], data, submission)
    truth = read_segment_submission(paths["test_segments_truth"])
    ranked = read_segment_submission(submission)
    score = ranked_segment_map_at_k(ranked, {label: set(keys) for label, keys in truth.items()})
    # A random ranking's expected AP is about the share of positives among the segments.
    chance = sum(len(keys) for keys in truth.values() if keys) / (segments * sum(1 for k in truth.values() if k))
    print(f"\nsubmission MAP@100,000 against the sample's hidden test truth: {score:.4f} "
          f"(a random ranking: about {chance:.4f})")
    print(f"exported models: {segment_model}, {video_model}\nsubmission: {submission}")


def _output_directory(path: str, flag: str) -> str:
    """Creates the directory a command writes into; a file in the way is one UserError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, expected a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {flag} {path}: {e.strerror or e}") from None
    return path


def _output_file(path: str, flag: str) -> str:
    """Checks, before any work, that a file can be written at `path` (its directory exists)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory, expected a file name")
    if not os.path.isdir(directory):
        raise UserError(f"{flag} {path}: directory {directory} does not exist")
    return path


def main(argv: Optional[List[str]] = None) -> int:
    def dispatch(argv):
        args = build_parser().parse_args(argv)
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
