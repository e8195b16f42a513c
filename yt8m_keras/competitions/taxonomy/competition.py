"""IndoML 2024 datathon (NielsenIQ): receipt lines -> supergroup > group > module | brand, with T5.

What the registry loads: the competition's entry points (interface: `yt8m_keras.competitions`).

    yt8m-keras sample taxonomy --output DIR [--products N]
    yt8m-keras convert taxonomy --features train.features --labels train.labels [--features test.features]
                                --output OUT [--val-fraction 0.1] [--vocab-size N | --tokenizer PATH]
    yt8m-keras evaluate --model-dir M --data D [--beams 4]   unconstrained, snapped and constrained
    yt8m-keras predict --model BASE/NAME/V [--model ...] --data D --output submission.predict
    yt8m-keras quickstart --recipe taxonomy
"""

from yt8m_keras.competitions import add_flag

NAME = "taxonomy"
TASKS = {"taxonomy": "yt8m_keras.competitions.taxonomy.task"}
CONVERTERS = {"product_jsonl": ("beam_jobs.taxonomy_to_tfrecords", "IndoML 2024 JSON-lines features + labels")}
PREDICT_OUTPUTS = ("paths",)
DESCRIPTION = "JSON lines -> T5 writing supergroup > group > module | brand, decoding constrained to valid paths"


def add_sample_flags(parser) -> None:
    from yt8m_keras.cli import positive_int

    add_flag(parser, "--products", type=positive_int, default=2000, help="taxonomy: receipt lines (default 2000)")


def sample(output: str, args):
    from yt8m_keras.competitions.taxonomy.sample import write_sample

    return write_sample(output, products=args.products, seed=args.seed)


def add_evaluate_flags(parser) -> None:
    from yt8m_keras.cli import positive_int

    add_flag(parser, "--beams", type=positive_int, default=4, help="taxonomy: beams of beam search (default 4)")


def evaluate(model_dir: str, data_dir: str, args) -> str:
    from yt8m_keras.competitions.taxonomy.predict import evaluate as evaluate_run

    return evaluate_run(model_dir, data_dir, beams=args.beams)["text"]


def add_predict_flags(parser) -> None:
    add_flag(parser, "--decoding", choices=("constrained", "snapped", "unconstrained"), default="constrained",
             help="taxonomy: constrained to valid paths (default), the model's free text snapped to the closest "
             "valid labels, or as generated")


def plan(model_paths, data_dir: str, args):
    from yt8m_keras.competitions.taxonomy.predict import plan as line_plan

    return line_plan(model_paths, data_dir, decoding=args.decoding, split=args.split)


def quickstart(workdir: str) -> None:
    from yt8m_keras.competitions.taxonomy.quickstart import run

    run(workdir)
