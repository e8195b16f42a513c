"""SIIM-ISIC Melanoma Classification (Kaggle 2020): JPEG + CSV, EfficientNet + metadata, AUC.

What the registry loads: the competition's entry points (interface: `yt8m_keras.competitions`).

    yt8m-keras sample melanoma --output DIR [--images N]
    yt8m-keras convert melanoma --csv train.csv --images jpeg/train [--csv test.csv --images jpeg/test]
                                [--isic2019 DIR] --output OUT [--image-size 512] [--folds 5] ...
    yt8m-keras evaluate --model-dir M --data D [--tta 1]        AUC of P(melanoma) on the run's fold
    yt8m-keras predict --model BASE/NAME/V [--model ...] --data D --output submission.csv
    yt8m-keras quickstart --recipe melanoma
"""

from yt8m_keras.competitions import add_flag

NAME = "melanoma"
TASKS = {"melanoma": "yt8m_keras.competitions.melanoma.task"}
CONVERTERS = {"melanoma_jpeg": ("beam_jobs.melanoma_to_tfrecords", "SIIM-ISIC JPEG folders + CSVs (2020, 2019)")}
PREDICT_OUTPUTS = ("images",)
DESCRIPTION = "JPEG + CSV -> EfficientNet + metadata, 2 folds x 2 configurations -> 8-way TTA, rank average"


def add_sample_flags(parser) -> None:
    from yt8m_keras.cli import positive_int

    # The convert job's --images is a folder; here it is a count (different subcommands).
    add_flag(parser, "--images", type=positive_int, default=300, help="melanoma: 2020 training images (default 300)")


def sample(output: str, args):
    from yt8m_keras.competitions.melanoma.sample import write_sample

    return write_sample(output, images=args.images, seed=args.seed)


def add_evaluate_flags(parser) -> None:
    from yt8m_keras.cli import non_negative_int

    add_flag(parser, "--tta", type=non_negative_int, default=0, help="cdiscount: augmented copies per image "
             "(0: none); melanoma: any N > 0 averages the 8 orientations")


def evaluate(model_dir: str, data_dir: str, args) -> str:
    from yt8m_keras.competitions.melanoma.predict import evaluate as evaluate_run

    result = evaluate_run(model_dir, data_dir, tta=args.tta > 0)
    return f"{result['text']}\nout-of-fold predictions: {result['oof']}"


def add_predict_flags(parser) -> None:
    pass  # 8-orientation TTA, fold averaging and the rank average are always on


def plan(model_paths, data_dir: str, args):
    from yt8m_keras.competitions.melanoma.predict import plan as image_plan

    return image_plan(model_paths, data_dir, split=args.split)


def quickstart(workdir: str) -> None:
    from yt8m_keras.competitions.melanoma.quickstart import run

    run(workdir)
