"""The toy competition's entry points, as `yt8m_keras.competitions` documents them."""

import csv
import os

import numpy as np
import tensorflow as tf

from yt8m_keras.competitions import add_flag

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


def predict(model_paths, data_dir, output, args):
    signature = tf.saved_model.load(model_paths[0]).signatures["serving_default"]
    ids, _, category_ids = _predictions(
        lambda records, x: signature(tf_example=tf.constant(records))["category_ids"].numpy(), data_dir, args.split)
    with open(output, "w", newline="") as f:
        csv.writer(f).writerows([("id", "category_id"), *zip(ids.tolist(), category_ids.tolist())])
    return f"wrote {output}: {len(ids)} points"


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
    print(predict([export(model_dir, os.path.join(workdir, "export"))], data, os.path.join(workdir, "s.csv"),
                  SimpleNamespace(split="test")))
