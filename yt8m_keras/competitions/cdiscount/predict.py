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

import functools
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrecords import UserError
from tfrecords import cdiscount_product as kind
from tfrecords.manifest import check_same_classes, read_classes
from yt8m_keras.competitions.cdiscount.combine import RULES, average_tta, combine, combine_all, parse_rule
from yt8m_keras.competitions.cdiscount.augment import augment
from yt8m_keras.competitions.cdiscount.input import batch_products, shard_files
from yt8m_keras.inference import (Files, Plan, Submission, fixed_batches, load_saved_model, read_records,
                                  require_saved_model, run_local,
                                  write_text)
from yt8m_keras.progress import Progress

# Images per call of the exported model: every call has this shape (see `load_served`).
IMAGE_BATCH = 32


def product_images(batch: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch of products -> (images [N, S, S, 3] of every real image, product_index [N] into the
    batch, image_index [N]: the image's place within its product)."""
    counts = batch[kind.NUM_IMAGES]
    mask = np.arange(kind.MAX_IMAGES)[None, :] < counts[:, None]
    product_index = np.repeat(np.arange(len(counts)), counts)
    image_index = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    return batch[kind.IMAGES][mask], product_index, image_index


def tta_seeds(seed: int, product_ids: np.ndarray, image_index: np.ndarray, copies: int, copy: int) -> np.ndarray:
    """Stateless seeds [N, 2] of one TTA copy, keyed by (seed, product, image, copy): the same
    image gets the same augmentation whichever batch or worker scores it."""
    key = (product_ids.astype(np.int64) * kind.MAX_IMAGES + image_index) * copies + copy
    return np.stack([np.full(len(key), seed, np.int64), key], axis=1)


def score_images(predict: Callable, batch: Dict[str, np.ndarray], image_size: int, tta: int = 0,
                 seed: int = 0) -> Dict[str, np.ndarray]:
    """Probabilities of a batch of products' images: `probs` [N, C], `product_index` [N] and, with
    `tta`, `tta_probs` [N, tta, C] (seeded augmented copies, see `tta_seeds`)."""
    images, product_index, image_index = product_images(batch)
    result = {"probs": predict(images), "product_index": product_index}
    if tta:
        image_ids = batch[kind.PRODUCT_ID][product_index]
        copies = []
        for t in range(tta):
            seeds = tf.constant(tta_seeds(seed, image_ids, image_index, tta, t))
            augmented = tf.map_fn(lambda a: augment(a[0], a[1], image_size), (tf.constant(images), seeds),
                                  fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
            copies.append(predict(augmented.numpy()))
        result["tta_probs"] = np.stack(copies, axis=1)
    return result


def image_predictions(predict: Callable, data_dir: str, split: str, image_size: int, tta: int = 0,
                      seed: int = 0, batch_size: int = 32, progress: bool = False) -> Dict[str, np.ndarray]:
    """Runs `predict` (float pixels [n, S, S, 3] -> probabilities [n, C]) over a split, once.

    Returns:
        `product_id` [P], `label` [P], `product_index` [N] (the product of each image),
        `probs` [N, C] and, if `tta`, `tta_probs` [N, tta, C] (see `score_images`).
    """
    ids, labels, index, probs, tta_probs = [], [], [], [], []
    images_seen = 0
    bar = Progress("products") if progress else None
    for records in read_records(Files(*shard_files(data_dir, split)), batch_size):
        batch = decode_products(records, image_size)
        scored = score_images(predict, batch, image_size, tta, seed)
        index.append(scored["product_index"] + len(ids))
        ids.extend(batch[kind.PRODUCT_ID].tolist())
        labels.extend(batch[kind.LABEL].tolist())
        probs.append(scored["probs"])
        if tta:
            tta_probs.append(scored["tta_probs"])
        images_seen += len(scored["probs"])
        if bar is not None:
            bar.update(len(batch[kind.PRODUCT_ID]), images=images_seen)
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
    """(pixels function, image size, classes) of an exported SavedModel.

    The function scores any number of images in calls of exactly IMAGE_BATCH (see
    `yt8m_keras.inference.fixed_batches`), so an image's scores never depend on its batch.
    """
    loaded = load_saved_model(model_path)
    if "pixels" not in loaded.signatures:
        raise UserError(f"{model_path} has no 'pixels' signature: export it with `yt8m-keras export`")
    pixels = loaded.signatures["pixels"]
    image_size = int(pixels.structured_input_signature[1]["images"].shape[1])
    classes = read_classes(os.path.join(model_path, "assets.extra"))

    def predict_fn(images, _keep=loaded):  # `_keep`: the signature does not own its variables
        return fixed_batches(lambda x: pixels(images=tf.constant(x))["probabilities"].numpy(),
                             np.asarray(images, np.float32), IMAGE_BATCH)

    return predict_fn, image_size, classes


def decode_products(records: List[bytes], image_size: int) -> Dict[str, np.ndarray]:
    """Serialized products -> one `product_dataset` batch of arrays, decoded in parallel."""
    batch = batch_products(tf.data.Dataset.from_tensor_slices(tf.constant(records, tf.string)), len(records),
                           image_size)
    return {key: value.numpy() for key, value in next(iter(batch)).items()}


class ProductScorer:
    """Scores serialized products with an exported model: one (product_id, category_id) row each."""

    def __init__(self, model_path: str, rule: str, tta: int, seed: int):
        self.predict, self.image_size, classes = load_served(model_path)
        self.category_ids = np.array([c["category_id"] for c in classes])
        self.rule, self.tta, self.seed = rule, tta, seed

    def __call__(self, records: List[bytes]) -> List[Tuple[int, int]]:
        batch = decode_products(records, self.image_size)
        scored = score_images(self.predict, batch, self.image_size, self.tta, self.seed)
        probs = average_tta(scored["tta_probs"]) if self.tta else scored["probs"]
        # Per-product rules only mix a product's own images, so a batch alone gives each its row.
        combined = combine(probs, scored["product_index"], self.rule)
        if len(combined) != len(records):  # combine() drops products without images
            raise UserError("a product without images cannot be predicted")
        return list(zip(batch[kind.PRODUCT_ID].tolist(), self.category_ids[combined.argmax(axis=1)].tolist()))


class ProductSubmission(Submission):
    """Kaggle's `_id,category_id`, one row per product, sorted by _id."""

    def write_rows(self, rows: List[Tuple[int, int]], path: str) -> Dict:
        write_submission(path, np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64))
        return {"products": len(rows), "text": f"wrote {path}: {len(rows)} products"}


def write_submission(path: str, product_ids: np.ndarray, category_ids: np.ndarray) -> None:
    """Kaggle's `_id,category_id`, one row per product, sorted by _id; written atomically."""
    order = np.argsort(product_ids, kind="stable")
    lines = ["_id,category_id\n"]
    lines.extend(f"{p},{c}\n" for p, c in zip(product_ids[order].tolist(), category_ids[order].tolist()))
    write_text(path, "".join(lines))


def plan(model_paths: Sequence[str], data_dir: str, split: str = "test", rule: str = "power:0.1",
         tta: int = 0, seed: int = 0, batch_size: int = 32) -> Plan:
    """The batch inference of `split` with one exported model (see `yt8m_keras.inference`)."""
    if len(model_paths) != 1:
        raise UserError("products: give one --model")
    try:
        parse_rule(rule)
    except ValueError as e:
        raise UserError(f"--combine: {e}") from None
    model_path = model_paths[0]
    require_saved_model(model_path)  # one clear error now, not on every worker
    check_same_classes(read_classes(os.path.join(model_path, "assets.extra")),
                       os.path.join(model_path, "assets.extra"), data_dir)
    return Plan(Files(*shard_files(data_dir, split)), functools.partial(ProductScorer, model_path, rule, tta, seed),
                ProductSubmission(), batch_size, "products")


def predict(model_path: str, data_dir: str, output: str, split: str = "test", rule: str = "power:0.1",
            tta: int = 0, seed: int = 0, batch_size: int = 32) -> int:
    """Writes the submission for `split`; returns the number of products."""
    return run_local(plan([model_path], data_dir, split, rule, tta, seed, batch_size), output)["products"]
