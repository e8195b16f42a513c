"""Cdiscount Image Classification (Kaggle 2017): BSON products, Xception, per-product combining.

What the registry loads: the competition's entry points (interface: `yt8m_keras.competitions`).

    yt8m-keras sample cdiscount --output DIR [--products N] [--classes C]
    yt8m-keras convert cdiscount --input train.bson ...        (the `bson` Beam job)
    yt8m-keras evaluate --model-dir M --data D [--tta N]       top-1 per combination rule
    yt8m-keras predict --model BASE/NAME/V --data D --output s.csv [--combine R] [--tta N]
    yt8m-keras quickstart --recipe cdiscount
"""

from yt8m_keras.competitions import add_flag

NAME = "cdiscount"
TASKS = {"cdiscount": "yt8m_keras.competitions.cdiscount.task"}
CONVERTERS = {"bson": ("beam_jobs.bson_to_tfrecords", "Cdiscount BSON files")}
PREDICT_OUTPUTS = ("products",)
DESCRIPTION = "BSON -> Xception -> per-product top-1 with TTA -> submission"
DEFAULT_CLASSES = 8


def add_sample_flags(parser) -> None:
    from yt8m_keras.cli import positive_int

    add_flag(parser, "--products", type=positive_int, default=400, help="cdiscount: labelled products (default 400)")
    add_flag(parser, "--classes", type=positive_int, help="classes (default: cdiscount 8, youtube8m 20)")


def sample(output: str, args):
    from yt8m_keras.competitions.cdiscount.sample import write_sample

    return write_sample(output, products=args.products, classes=args.classes or DEFAULT_CLASSES, seed=args.seed)


def add_evaluate_flags(parser) -> None:
    from yt8m_keras.cli import non_negative_int

    add_flag(parser, "--tta", type=non_negative_int, default=0, help="cdiscount: augmented copies per image (0: none)")


def evaluate(model_dir: str, data_dir: str, args) -> str:
    from yt8m_keras.competitions.cdiscount.predict import evaluate as evaluate_run

    return evaluate_run(model_dir, data_dir, tta=args.tta, split=args.split)["text"]


def add_predict_flags(parser) -> None:
    from yt8m_keras.cli import non_negative_int

    add_flag(parser, "--combine", default="power:0.1", help="products: per-product rule: first, mean, product, "
             "rms, median, power[:A], max (default power:0.1)")
    add_flag(parser, "--tta", type=non_negative_int, default=0, help="products: augmented copies per image")


def plan(model_paths, data_dir: str, args):
    from yt8m_keras.competitions.cdiscount.predict import plan as product_plan

    return product_plan(model_paths, data_dir, split=args.split, rule=args.combine, tta=args.tta)


def quickstart(workdir: str) -> None:
    from yt8m_keras.competitions.cdiscount.quickstart import run

    run(workdir)
