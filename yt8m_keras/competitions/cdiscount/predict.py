"""Per-product prediction: per-image probabilities computed once, then combined by every rule.

    yt8m-keras evaluate --model-dir MODEL --data DATA [--tta N]
    yt8m-keras predict --model BASE/NAME/VERSION --data DATA --split test --output submission.csv
                       [--combine power:0.1] [--tta N]

`evaluate` uses the Keras model of a training run and prints top-1 accuracy on the val
split for every combination rule, without and with test-time augmentation (the Cdiscount
seed paper's Table I). `predict` uses the exported SavedModel (its `pixels` signature),
so batch prediction runs exactly what TF Serving serves, and writes Kaggle's
`_id,category_id` file.
"""

import csv
import os
from typing import Callable, Dict

import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import cdiscount_product as kind
from tfrecords.manifest import check_same_classes, read_classes
from yt8m_keras.competitions.cdiscount.combine import RULES, average_tta, combine, combine_all, parse_rule
from yt8m_keras.competitions.cdiscount.augment import augment
from yt8m_keras.competitions.cdiscount.input import product_dataset
from yt8m_keras.progress import Progress


def image_predictions(predict: Callable, data_dir: str, split: str, image_size: int, tta: int = 0,
                      seed: int = 0, batch_size: int = 32, progress: bool = False) -> Dict[str, np.ndarray]:
    """Runs `predict` (float pixels [n, S, S, 3] -> probabilities [n, C]) over a split, once.

    Returns:
        `product_id` [P], `label` [P], `product_index` [N] (the product of each image),
        `probs` [N, C] and, if `tta`, `tta_probs` [N, tta, C] (augmented copies, keyed by
        (seed, image, copy) so the same call gives the same numbers).
    """
    ids, labels, index, probs, tta_probs = [], [], [], [], []
    images_seen = 0
    bar = Progress("products") if progress else None
    for batch in product_dataset(data_dir, split, batch_size=batch_size, image_size=image_size):
        counts = batch[kind.NUM_IMAGES].numpy()
        mask = tf.sequence_mask(counts, kind.MAX_IMAGES)
        images = tf.boolean_mask(batch[kind.IMAGES], mask)
        index.append(np.repeat(np.arange(len(ids), len(ids) + len(counts)), counts))
        ids.extend(batch[kind.PRODUCT_ID].numpy().tolist())
        labels.extend(batch[kind.LABEL].numpy().tolist())
        probs.append(np.asarray(predict(images)))
        if tta:
            positions = tf.range(images_seen, images_seen + len(images), dtype=tf.int64)
            copies = []
            for t in range(tta):
                seeds = tf.stack([tf.fill(tf.shape(positions), tf.cast(seed, tf.int64)), positions * tta + t], axis=1)
                augmented = tf.map_fn(lambda a: augment(a[0], a[1], image_size), (images, seeds),
                                      fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
                copies.append(np.asarray(predict(augmented)))
            tta_probs.append(np.stack(copies, axis=1))
        images_seen += len(images)
        if bar is not None:
            bar.update(len(counts), images=images_seen)
    if bar is not None:
        bar.close()
    if not ids:
        raise UserError(f"the {split} split of {data_dir} is empty")
    result = {"product_id": np.array(ids), "label": np.array(labels),
              "product_index": np.concatenate(index), "probs": np.concatenate(probs)}
    if tta:
        result["tta_probs"] = np.concatenate(tta_probs)
    return result


def accuracy_table(predictions: Dict[str, np.ndarray], rules=RULES) -> Dict[str, Dict[str, float]]:
    """Top-1 accuracy per rule: {"rule": {"no TTA": acc, "TTA xN": acc}}."""
    labels = predictions["label"]
    columns = {"no TTA": predictions["probs"]}
    if "tta_probs" in predictions:
        columns[f"TTA x{predictions['tta_probs'].shape[1]}"] = average_tta(predictions["tta_probs"])
    table: Dict[str, Dict[str, float]] = {}
    for column, probs in columns.items():
        for rule, combined in combine_all(probs, predictions["product_index"], rules).items():
            table.setdefault(rule, {})[column] = float(np.mean(combined.argmax(axis=1) == labels))
    return table


def format_table(table: Dict[str, Dict[str, float]], products: int, classes: int) -> str:
    columns = list(next(iter(table.values())))
    lines = [f"top-1 accuracy on {products} products, {classes} classes (chance {1 / classes:.3f})",
             f"{'rule':<12}" + "".join(f"{c:>12}" for c in columns)]
    for rule, row in table.items():
        lines.append(f"{rule:<12}" + "".join(f"{row[c]:>12.4f}" for c in columns))
    return "\n".join(lines)


def evaluate(model_dir: str, data_dir: str, tta: int = 0, split: str = "val", batch_size: int = 32,
             rules=RULES) -> Dict:
    """Evaluates a training run's best weights; returns the table and the printable text."""
    from yt8m_keras.train import load_trained

    recipe, classes, model = load_trained(model_dir)
    check_same_classes(classes, model_dir, data_dir)
    predictions = image_predictions(lambda x: model.predict_on_batch(x), data_dir, split, recipe.data.image_size,
                                    tta=tta, seed=recipe.training.seed, batch_size=batch_size, progress=True)
    if (predictions["label"] < 0).any():
        raise UserError(f"the {split} split has no labels to evaluate against")
    table = accuracy_table(predictions, rules)
    return {"table": table, "text": format_table(table, len(predictions["product_id"]), len(classes))}


def load_served(model_path: str):
    """(pixels function, image size, classes) of an exported SavedModel."""
    if not tf.io.gfile.exists(os.path.join(model_path, "saved_model.pb")):
        raise UserError(f"no SavedModel in {model_path} (expected BASE/NAME/VERSION from `yt8m-keras export`)")
    loaded = tf.saved_model.load(model_path)
    if "pixels" not in loaded.signatures:
        raise UserError(f"{model_path} has no 'pixels' signature: export it with `yt8m-keras export`")
    pixels = loaded.signatures["pixels"]
    image_size = int(pixels.structured_input_signature[1]["images"].shape[1])
    classes = read_classes(os.path.join(model_path, "assets.extra"))
    # Keep `loaded` alive with the function: the signature does not own its variables.
    return (lambda x, _keep=loaded: pixels(images=tf.convert_to_tensor(x))["probabilities"].numpy()), image_size, classes


def write_submission(path: str, product_ids: np.ndarray, category_ids: np.ndarray) -> None:
    """Kaggle's `_id,category_id`, one row per product, sorted by _id; written atomically."""
    order = np.argsort(product_ids, kind="stable")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["_id", "category_id"])
        writer.writerows(zip(product_ids[order].tolist(), category_ids[order].tolist()))
    os.replace(tmp, path)


def predict(model_path: str, data_dir: str, output: str, split: str = "test", rule: str = "power:0.1",
            tta: int = 0, seed: int = 0, batch_size: int = 32) -> int:
    """Writes the submission for `split`; returns the number of products."""
    try:
        parse_rule(rule)
    except ValueError as e:
        raise UserError(f"--combine: {e}") from None
    predict_fn, image_size, classes = load_served(model_path)
    check_same_classes(classes, os.path.join(model_path, "assets.extra"), data_dir)
    predictions = image_predictions(predict_fn, data_dir, split, image_size, tta=tta, seed=seed,
                                    batch_size=batch_size, progress=True)
    probs = average_tta(predictions["tta_probs"]) if tta else predictions["probs"]
    combined = combine(probs, predictions["product_index"], rule)
    category_ids = np.array([c["category_id"] for c in classes])[combined.argmax(axis=1)]
    write_submission(output, predictions["product_id"], category_ids)
    return len(predictions["product_id"])
