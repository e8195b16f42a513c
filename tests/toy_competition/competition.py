"""The toy competition's entry points, as `yt8m_keras.competitions` documents them."""

import csv
import os

import numpy as np
import tensorflow as tf

from yt8m_keras.competitions import add_flag
from yt8m_keras.inference import Submission

NAME = "toy"
TASKS = {"toy": "toy_competition.task"}
CONVERTERS = {"toycsv": ("toy_competition.convert", "toy points CSV")}
PREDICT_OUTPUTS = ("points",)
DESCRIPTION = "CSV points -> a dense net"
CENTRES = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], np.float32)


def add_sample_flags(parser):
    add_flag(parser, "--points", type=int, default=300, help="toy: labelled points")


def sample(output, args):
    rng = np.random.default_rng(args.seed)
    path = os.path.join(output, "points.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "x0", "x1", "x2", "x3", "label"])
        for i in range(args.points + 50):
            label = int(rng.integers(3))
            x = CENTRES[label] + rng.normal(size=4)
            writer.writerow([i, *np.round(x, 4), label if i < args.points else ""])
    return {"points": path}


def add_evaluate_flags(parser):
    pass


def _predictions(model_fn, data_dir, split):
    from toy_competition import kind
    from tfrecords.manifest import read_manifest, shard_paths

    paths = shard_paths(data_dir, read_manifest(data_dir), split)
    records = [r.numpy() for r in tf.data.TFRecordDataset(paths)]
    parsed = kind.parse(tf.constant(records))
    return parsed["id"].numpy(), parsed["label"].numpy(), model_fn(records, parsed["x"])


def evaluate(model_dir, data_dir, args):
    from yt8m_keras.train import load_trained

    _, _, model = load_trained(model_dir)
    _, labels, probabilities = _predictions(lambda records, x: model.predict_on_batch(x), data_dir, args.split)
    return f"toy accuracy {np.mean(probabilities.argmax(1) == labels):.4f} (chance 0.3333)"


def add_predict_flags(parser):
    pass


class PointScorer:
    """Serialized points -> (id, category_id), with the export's `serving_default`."""

    def __init__(self, model_path):
        from yt8m_keras.inference import load_saved_model

        self.signature = load_saved_model(model_path).signatures["serving_default"]

    def __call__(self, records):
        from toy_competition import kind

        ids = kind.parse(tf.constant(records))["id"].numpy()
        category_ids = self.signature(tf_example=tf.constant(records))["category_ids"].numpy()
        return list(zip(ids.tolist(), category_ids.tolist()))


class Points(Submission):
    """`id,category_id`, sorted by id."""

    def write_rows(self, rows, path):
        from yt8m_keras.inference import write_text

        write_text(path, "id,category_id\n" + "".join(f"{i},{c}\n" for i, c in sorted(rows)))
        return {"points": len(rows), "text": f"wrote {path}: {len(rows)} points"}


def plan(model_paths, data_dir, args):
    import functools

    from tfrecords.manifest import read_manifest, shard_paths
    from yt8m_keras.inference import Files, Plan

    paths = shard_paths(data_dir, read_manifest(data_dir), args.split)
    return Plan(Files(paths, ""), functools.partial(PointScorer, model_paths[0]), Points(), 64, "points")


def quickstart(workdir):
    from types import SimpleNamespace

    from yt8m_keras.convert import convert
    from yt8m_keras.export import export
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    raw, data, model_dir = (os.path.join(workdir, d) for d in ("raw", "data", "model"))
    os.makedirs(raw, exist_ok=True)
    paths = sample(raw, SimpleNamespace(seed=0, points=300))
    convert("toy", ["--input", paths["points"], "--output", data])
    train(load_recipe(os.path.join(os.path.dirname(__file__), "toy.yaml")), data, model_dir, verbose=0)
    print(evaluate(model_dir, data, SimpleNamespace(split="val")))
    from yt8m_keras.inference import run_local

    model = export(model_dir, os.path.join(workdir, "export"))
    print(run_local(plan([model], data, SimpleNamespace(split="test")), os.path.join(workdir, "s.csv"))["text"])
