"""Avito Demand Prediction Challenge (Kaggle 2018): ads -> deal_probability, a network and LightGBM, stacked.

What the registry loads: the competition's entry points (interface: `yt8m_keras.competitions`).

    yt8m-keras sample avito --output DIR [--ads N] [--zip-images]
    yt8m-keras convert avito --csv train.csv --images train_jpg[.zip] [--csv test.csv --images test_jpg]
                             --output DATA [--folds 5]
    yt8m-keras train --recipe avito_lm --data DATA --model-dir LM                     stage 1
    yt8m-keras features --data DATA [--backbone resnet101 --weights imagenet]         stage 2
    yt8m-keras train --recipe avito_nn --data DATA --model-dir NN_F0 --set data.fold=0 \\
                     --set model.args.language_model=LM                                stage 3, per fold
    yt8m-keras evaluate --model-dir NN_F0 --data DATA        the fold's RMSE; its out-of-fold files
    yt8m-keras lgbm --data DATA --output OOF_DIR [--features 'NN_F*']                 stage 4a
    yt8m-keras stack --oof 'NN_F*' --oof OOF_DIR ... --data DATA --output submission.csv   stage 4b
    yt8m-keras quickstart --recipe avito
"""

from yt8m_keras.competitions import add_flag

NAME = "avito"
TASKS = {"avito_lm": "yt8m_keras.competitions.avito.lm_task", "avito_nn": "yt8m_keras.competitions.avito.task"}
CONVERTERS = {"avito_csv": ("beam_jobs.avito_to_tfrecords", "Avito train/test CSVs + JPEG folders or zips")}
PREDICT_OUTPUTS = ("ads",)
DESCRIPTION = ("ads CSV + JPEGs -> language model, CNN features, network on folds, LightGBM, stack -> RMSE, "
               "submission")


def add_sample_flags(parser) -> None:
    from yt8m_keras.cli import positive_int

    add_flag(parser, "--ads", type=positive_int, default=2000, help="avito: ads (default 2000)")
    add_flag(parser, "--zip-images", action="store_true", help="avito: pictures in Kaggle's zips, not folders")


def sample(output: str, args):
    from yt8m_keras.competitions.avito.sample import write_sample

    return write_sample(output, ads=args.ads, seed=args.seed, zip_images=args.zip_images)


def add_evaluate_flags(parser) -> None:
    pass


def evaluate(model_dir: str, data_dir: str, args) -> str:
    from yt8m_keras.train import trained_task

    if trained_task(model_dir) == "avito_lm":
        return _evaluate_language_model(model_dir, data_dir)
    from yt8m_keras.competitions.avito.predict import evaluate as evaluate_fold

    result = evaluate_fold(model_dir, data_dir)
    return f"{result['text']}\nout-of-fold files: {model_dir}/oof.csv, test.csv, features.npy"


def _evaluate_language_model(model_dir: str, data_dir: str) -> str:
    """Validation perplexity, beside a unigram model's (token frequencies of the training text)."""
    import numpy as np

    from yt8m_keras.competitions.avito import input as data
    from yt8m_keras.competitions.avito import lm_task
    from yt8m_keras.train import load_trained

    recipe, _, model = load_trained(model_dir)
    model.compile(**lm_task.compile_args())
    pre = lm_task.preprocessor(recipe, data_dir)
    val = lm_task.val_dataset(recipe, data_dir, recipe.training.batch_size)
    logs = model.evaluate(val, return_dict=True, verbose=0)
    vocabulary = pre.tokenizer.vocabulary_size()
    counts = np.ones(vocabulary)  # add-one smoothing: every subword possible
    for _, targets, weights in data.language_model_dataset(data_dir, pre, 256, recipe.data.fold, validation=False,
                                                           one_pass=True):
        counts += np.bincount(targets.numpy()[weights.numpy() > 0], minlength=vocabulary)
    log_p = np.log(counts / counts.sum())
    total, n = 0.0, 0
    for _, targets, weights in val:
        kept = targets.numpy()[weights.numpy() > 0]
        total, n = total - log_p[kept].sum(), n + len(kept)
    unigram = float(np.exp(total / max(n, 1)))
    return (f"language model, fold {recipe.data.fold} held out: validation perplexity {logs['perplexity']:.2f} "
            f"(a unigram model of the training text: {unigram:.2f}; a uniform guess: {vocabulary})")


def add_predict_flags(parser) -> None:
    pass


def plan(model_paths, data_dir: str, args):
    from yt8m_keras.competitions.avito.predict import plan as ad_plan

    return ad_plan(model_paths, data_dir, split=args.split)


def add_commands(subparsers) -> None:
    from yt8m_keras.cli import non_negative_int, positive_int

    parser = subparsers.add_parser("features", help="avito: CNN features of every picture (a Beam job), as memmaps")
    parser.add_argument("--data", required=True, help="a directory written by `convert avito`")
    parser.add_argument("--backbone", default="resnet101", help="a keras.applications backbone (default resnet101)")
    parser.add_argument("--weights", help="'imagenet' or a weights file (default: random; nothing is downloaded)")
    parser.add_argument("--image-size", type=positive_int, default=224, help="side of the CNN's input (default 224)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--overwrite", action="store_true", help="replace existing features")
    parser.set_defaults(handler=_features)

    parser = subparsers.add_parser("lgbm", help="avito: LightGBM on tabular (+ network) features, out of fold")
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True, help="the first-level model's directory (oof.csv, test.csv)")
    parser.add_argument("--features", action="append", default=[], metavar="RUNS",
                        help="network fold runs (paths or a quoted glob) whose out-of-fold features to add")
    parser.add_argument("--rounds", type=positive_int, default=300)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--threads", type=non_negative_int, default=0, help="LightGBM threads (0: all)")
    parser.set_defaults(handler=_lgbm)

    parser = subparsers.add_parser("stack", help="avito: a LightGBM stacker over out-of-fold predictions -> "
                                   "submission.csv")
    parser.add_argument("--oof", action="append", required=True, metavar="MODEL",
                        help="a first-level model: a directory with oof.csv and test.csv, or its fold runs "
                        "(a quoted glob); repeat")
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", required=True, help="the submission file (item_id,deal_probability)")
    parser.add_argument("--rounds", type=positive_int, default=200)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--threads", type=non_negative_int, default=0)
    parser.set_defaults(handler=_stack)


def run_features(data_dir: str, backbone: str = "resnet101", weights=None, image_size: int = 224,
                 batch_size: int = 64, overwrite: bool = False, pipeline_args=()) -> dict:
    """Stage 2: saves the CNN into DATA/image_cnn, then runs the Beam job into DATA/image_features."""
    import os

    from beam_jobs import avito_image_features
    from tfrecords import avito_ad
    from tfrecords.manifest import read_manifest
    from yt8m_keras.competitions.avito.cnn import save_backbone
    from yt8m_keras.competitions.avito.input import IMAGE_FEATURES
    from yt8m_keras.competitions.avito.task import IMAGE_CNN

    read_manifest(data_dir, kind=avito_ad.KIND)  # before anything is written next to it
    cnn = os.path.join(data_dir, IMAGE_CNN)
    save_backbone(cnn, backbone=backbone, weights=weights, image_size=image_size, overwrite=overwrite)
    return avito_image_features.run(["--data", data_dir, "--model", cnn, "--output",
                                     os.path.join(data_dir, IMAGE_FEATURES), "--batch-size", str(batch_size),
                                     *(["--overwrite"] if overwrite else []), *pipeline_args],
                                    prog="yt8m-keras features")


def _features(args) -> None:
    from beam_jobs.avito_image_features import summary

    # Locally; on Dataflow, run `python -m beam_jobs.avito_image_features` with Beam's flags.
    info = run_features(args.data, args.backbone, args.weights, args.image_size, args.batch_size, args.overwrite)
    print(summary(info))


def _lgbm(args) -> None:
    from yt8m_keras.competitions.avito.stacking import lgbm_first_level

    result = lgbm_first_level(args.data, args.output, args.features, args.rounds, args.seed, args.threads)
    print(f"LightGBM on {result['features']} features, {result['folds']} folds: out-of-fold RMSE "
          f"{result['rmse']:.4f}; {args.output}/oof.csv, test.csv, lgbm_fold*.txt")


def _stack(args) -> None:
    from yt8m_keras.cli import output_file
    from yt8m_keras.competitions.avito.stacking import stack

    output_file(args.output, "--output")
    result = stack(args.oof, args.data, args.output, args.rounds, args.seed, args.threads)
    print(f"{result['text']}\nwrote {args.output}: {result['test_ads']} test ads")


def quickstart(workdir: str) -> None:
    from yt8m_keras.competitions.avito.quickstart import run

    run(workdir)
