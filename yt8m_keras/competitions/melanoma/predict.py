"""Melanoma evaluation (AUC of P(melanoma), out-of-fold predictions) and submissions.

Prediction follows the 1st place: each model averages 8 orientations of every image (the
dihedral group: identity, flips, transpose and their combinations — exact, no
interpolation), the fold models of one configuration are averaged, and configurations are
combined by a rank average (each configuration's scores replaced by their normalised rank,
so models with differently calibrated probabilities weigh the same).

Example:

>>> evaluate("model_fold0", "data")["text"]       # AUC on fold 0, all images and 2020 only
>>> predict(["export/b3_f0/1", "export/b3_f1/1", "export/io_f0/1"], "data", "submission.csv")
"""

import csv
import functools
import os
from typing import Callable, Dict, List, Sequence

import numpy as np
import tensorflow as tf
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from tfrecords import UserError
from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma import input as data
from yt8m_keras.inference import (Files, Plan, Submission, fixed_batches, load_saved_model, require_saved_model,
                                  run_local, write_text)
from yt8m_keras.progress import Progress
from yt8m_keras.recipes import read_yaml, recipe_from_dict

ORIENTATIONS = ("identity", "flip_left_right", "flip_up_down", "rotate_180",
                "transpose", "transpose_flip_left_right", "transpose_flip_up_down", "transpose_rotate_180")
OOF_FILE = "oof.csv"


def orient(images: np.ndarray, orientation: str) -> np.ndarray:
    """One of the 8 orientations of a batch [B, H, W, C] of square images (exact index shuffles)."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}")
    if orientation.startswith("transpose"):
        images = np.swapaxes(images, 1, 2)
    if orientation.endswith(("flip_left_right", "rotate_180")):
        images = images[:, :, ::-1]
    if orientation.endswith(("flip_up_down", "rotate_180")):
        images = images[:, ::-1]
    return np.ascontiguousarray(images)


def rank_average(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of normalised ranks (rank / n, ties sharing their mean rank) over score vectors."""
    return np.mean([rankdata(s) / len(s) for s in scores], axis=0)


def _predict_split(predict_fn: Callable, data_dir: str, split: str, image_size: int, fold, folds: int,
                   tta: bool, batch_size: int = 32) -> Dict[str, np.ndarray]:
    """Runs `predict_fn(images uint8, metadata) -> probabilities [n, 9]` over a split (TTA-averaged if asked)."""
    names, classes, targets, sources, probabilities = [], [], [], [], []
    progress = Progress("images")
    for batch in data.eval_dataset(data_dir, split, batch_size, image_size, fold=fold, folds=folds):
        images, meta = batch["image"].numpy(), batch["metadata"].numpy()
        views = ORIENTATIONS if tta else ORIENTATIONS[:1]
        probabilities.append(np.mean([predict_fn(orient(images, o), meta) for o in views], axis=0))
        names.extend(n.decode() for n in batch[kind.IMAGE_NAME].numpy())
        classes.append(batch[kind.CLASS_INDEX].numpy())
        targets.append(batch[kind.TARGET].numpy())
        sources.append(batch[kind.SOURCE].numpy())
        progress.update(len(images))
    progress.close()
    if not names:
        raise UserError(f"the {split} split of {data_dir} is empty")
    return {"image_name": np.array(names), "class_index": np.concatenate(classes), "target": np.concatenate(targets),
            "source": np.concatenate(sources), "probabilities": np.concatenate(probabilities)}


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")  # AUC needs both classes
    return float(roc_auc_score(labels, scores))


def evaluate(model_dir: str, data_dir: str, tta: bool = False, batch_size: int = 32, seed: int = 0) -> Dict:
    """AUC of P(melanoma) on the run's validation fold (all images, 2020 only), a random model beside it.

    Writes the out-of-fold predictions to `model_dir/oof.csv` (image_name, fold, target,
    source, melanoma, then the 9 probabilities).
    """
    from yt8m_keras.competitions.melanoma.task import uses_metadata
    from yt8m_keras.train import load_trained

    recipe, _, model = load_trained(model_dir)
    d = recipe.data
    with_metadata = uses_metadata(recipe)

    def predict_fn(images, meta):
        inputs = {"image": images, **({"metadata": meta} if with_metadata else {})}
        return np.asarray(model.predict_on_batch(inputs))

    result = _predict_split(predict_fn, data_dir, "val", d.image_size, d.fold, d.folds, tta, batch_size)
    melanoma = result["probabilities"][:, kind.MELANOMA]
    is_melanoma = (result["class_index"] == kind.MELANOMA).astype(int)
    random_scores = np.random.default_rng(seed).random(len(melanoma))
    is_2020 = result["source"] != kind.SOURCE_2019  # Deotte's records carry no source: 2020
    table = {
        "all": {"images": len(melanoma), "melanoma": int(is_melanoma.sum()), "model": _auc(is_melanoma, melanoma),
                "random": _auc(is_melanoma, random_scores)},
        "2020": {"images": int(is_2020.sum()), "melanoma": int(is_melanoma[is_2020].sum()),
                 "model": _auc(is_melanoma[is_2020], melanoma[is_2020]),
                 "random": _auc(is_melanoma[is_2020], random_scores[is_2020])},
    }
    write_oof(os.path.join(model_dir, OOF_FILE), result, d.fold)
    lines = [f"AUC of P(melanoma) on fold {d.fold}" + (" (8-orientation TTA)" if tta else ""),
             f"{'images':<8}{'count':>8}{'melanoma':>10}{'model':>9}{'random':>9}"]
    for name, row in table.items():
        lines.append(f"{name:<8}{row['images']:>8}{row['melanoma']:>10}{row['model']:>9.4f}{row['random']:>9.4f}")
    return {"table": table, "text": "\n".join(lines), "oof": os.path.join(model_dir, OOF_FILE)}


def write_oof(path: str, result: Dict[str, np.ndarray], fold: int) -> None:
    """Out-of-fold predictions as CSV, written atomically."""
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image_name", "fold", "target", "source", "melanoma", *kind.CLASSES])
        for i, name in enumerate(result["image_name"]):
            probabilities = result["probabilities"][i]
            writer.writerow([name, fold, int(result["target"][i]), int(result["source"][i]),
                             f"{probabilities[kind.MELANOMA]:.6f}", *(f"{p:.6f}" for p in probabilities)])
    tf.io.gfile.rename(tmp, path, overwrite=True)


class ExportedModel:
    """An exported melanoma model: its recipe (the configuration) and its `pixels` signature.

    Calls have exactly `batch_size` images (`fixed_batches`): an image's score never depends
    on its batch.
    """

    def __init__(self, path: str, batch_size: int = 32):
        self.recipe = recipe_from_dict(read_yaml(os.path.join(require_saved_model(path), "assets.extra",
                                                              "recipe.yaml")))
        if self.recipe.task != "melanoma":
            raise UserError(f"{path} is a {self.recipe.task} model, not a melanoma one")
        self.path = path
        self.batch_size = batch_size

    @functools.cached_property
    def _pixels(self):  # loaded when first scoring: the launcher only reads the recipe
        return load_saved_model(self.path).signatures["pixels"]

    @property
    def configuration(self) -> str:
        """Models differing only in their validation fold are one configuration (averaged)."""
        values = self.recipe.to_dict()
        values["data"] = {k: v for k, v in values["data"].items() if k != "fold"}
        values["training"] = {k: v for k, v in values["training"].items() if k != "seed"}
        return repr(sorted((k, repr(v)) for k, v in values.items() if k != "name"))

    def __call__(self, images: np.ndarray, meta: np.ndarray) -> np.ndarray:
        def call(rows):
            return self._pixels(images=tf.constant(rows["images"]),
                                metadata=tf.constant(rows["metadata"]))["probabilities"].numpy()

        return fixed_batches(call, {"images": images, "metadata": meta}, self.batch_size)


class ImageScorer:
    """Serialized images -> (image_name, P(melanoma) of each model, 8-orientation TTA averaged)."""

    def __init__(self, data_dir: str, model_paths: Sequence[str], tta: bool = True):
        self.source = data.source(data_dir)
        self.models = [ExportedModel(path) for path in model_paths]
        self.views = ORIENTATIONS if tta else ORIENTATIONS[:1]

    def __call__(self, records: List[bytes]) -> List[tuple]:
        decoded: Dict[int, Dict[str, np.ndarray]] = {}
        columns = []
        for model in self.models:
            size = model.recipe.data.image_size
            if size not in decoded:
                decoded[size] = data.decode_records(records, self.source, size)
            batch = decoded[size]
            probabilities = np.mean([model(orient(batch["image"], o), batch["metadata"]) for o in self.views], axis=0)
            columns.append(probabilities[:, kind.MELANOMA])
        names = [n.decode() for n in next(iter(decoded.values()))[kind.IMAGE_NAME]]
        return [(name, tuple(float(c[i]) for c in columns)) for i, name in enumerate(names)]


class ImageSubmission(Submission):
    """`image_name,target`: per configuration the mean of its fold models; configurations rank-averaged.

    Args:
        configurations: per configuration, the score columns (model positions) of its folds.
    """

    def __init__(self, configurations: List[List[int]]):
        self.configurations = configurations

    def write_rows(self, rows: List[tuple], path: str) -> Dict:
        rows = sorted(rows)
        names = np.array([name for name, _ in rows])
        scores = np.array([s for _, s in rows], np.float64).reshape(len(rows), -1)
        per_configuration = [scores[:, columns].mean(axis=1) for columns in self.configurations]
        final = per_configuration[0] if len(per_configuration) == 1 else rank_average(per_configuration)
        write_submission(path, names, final)
        models = sum(len(c) for c in self.configurations)
        return {"images": len(rows), "models": models, "configurations": len(self.configurations),
                "text": f"wrote {path}: {len(rows)} images, {models} models in {len(self.configurations)} "
                        "configurations (8-orientation TTA, folds averaged, rank average)"}


def plan(model_paths: Sequence[str], data_dir: str, split: str = "test", tta: bool = True,
         batch_size: int = 32) -> Plan:
    """Batch inference of the test images: Kaggle's `image_name,target`."""
    if split != "test":
        raise UserError(f"melanoma: predict writes the test split's submission, got --split {split}")
    models = [ExportedModel(path) for path in model_paths]
    configurations: Dict[str, List[int]] = {}
    for position, model in enumerate(models):
        configurations.setdefault(model.configuration, []).append(position)
    src = data.source(data_dir)
    if not src.test:
        raise UserError(f"{data_dir} has no test shards")
    return Plan(Files(list(src.test), src.compression),
                functools.partial(ImageScorer, data_dir, list(model_paths), tta),
                ImageSubmission(list(configurations.values())), batch_size, "images")


def predict(model_paths: Sequence[str], data_dir: str, output: str, tta: bool = True, batch_size: int = 32) -> Dict:
    """Writes Kaggle's `image_name,target` for the test split; returns counts and `text`.

    Per model: TTA over 8 orientations; per configuration: the mean of its fold models;
    across configurations: the rank average. One configuration keeps its mean probability.
    """
    return run_local(plan(model_paths, data_dir, "test", tta, batch_size), output)


def write_submission(path: str, image_names: np.ndarray, scores: np.ndarray) -> None:
    """`image_name,target`, sorted by image_name, written atomically."""
    order = np.argsort(image_names, kind="stable")
    write_text(path, "image_name,target\n" + "".join(f"{image_names[i]},{scores[i]:.6f}\n" for i in order))
