"""Avito out-of-fold bookkeeping: a fold's predictions and features, first-level models, RMSE tables.

`evaluate` (per fold run) scores the run on its held-out fold and writes into the run:

    oof.csv        item_id,row,fold,deal_probability    the held-out fold's training ads
    test.csv       item_id,row,deal_probability         every test ad
    features.npy   float16 [N, units], by row           the network's features of every ad

A first-level model is a directory with `oof.csv` covering every training ad once and
`test.csv` (LightGBM writes one directly), or the fold runs of one configuration, combined
by `first_level`: the folds' oof.csv concatenated (each training ad exactly once, checked),
their test predictions averaged, and their features taken out of fold (a training ad's from
the run that held it out, a test ad's averaged).

Example:

>>> evaluate("nn_center_fold0", "data")["rmse"]
>>> first_level(["nn_center_fold0", "nn_center_fold1"], "data", "oof/nn_center")
"""

import functools
import glob
import os
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

from tfrecords import UserError
from tfrecords import avito_ad as kind
from tfrecords.manifest import read_manifest
from yt8m_keras.inference import (Files, Plan, Submission, fixed_batches, load_saved_model, require_saved_model,
                                  run_local, write_text)

OOF, TEST, FEATURES = "oof.csv", "test.csv", "features.npy"


def rmse(truth, predicted) -> float:
    truth, predicted = np.asarray(truth, np.float64), np.asarray(predicted, np.float64)
    return float(np.sqrt(np.mean((truth - predicted) ** 2)))


def _write_csv(path: str, frame: pd.DataFrame) -> None:
    tmp = path + ".tmp"
    frame.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    os.replace(tmp, path)


def _save_npy(path: str, array: np.ndarray) -> None:
    tmp = path + ".tmp.npy"
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


def evaluate(model_dir: str, data_dir: str, batch_size: int = 256) -> Dict:
    """The run's RMSE on its held-out fold (with the training mean beside it); writes its out-of-fold files."""
    import keras

    from yt8m_keras.competitions.avito import input as data
    from yt8m_keras.models.avito_network import features_model
    from yt8m_keras.train import load_trained

    recipe, _, model = load_trained(model_dir)
    if recipe.task != "avito_nn":
        raise UserError(f"{model_dir} is a {recipe.task} run; evaluate scores avito_nn runs")
    n = sum(split["records"] for split in read_manifest(data_dir, kind=kind.KIND)["splits"].values())
    head = keras.Model(model.inputs, [model.output, features_model(model).output])
    images = data.image_features(data_dir, recipe.data.image_features)
    rows, ids, folds, targets, predictions = [], [], [], [], []
    features = np.zeros((n, head.outputs[1].shape[-1]), np.float16)
    for inputs, meta in data.all_ads(data_dir, model.preprocessor, batch_size, images):
        probability, hidden = head(inputs, training=False)
        batch_rows = meta[kind.ROW].numpy()
        features[batch_rows] = np.asarray(hidden, np.float16)
        rows.append(batch_rows)
        ids.extend(v.decode() for v in meta[kind.ITEM_ID].numpy())
        folds.append(meta[kind.FOLD].numpy())
        targets.append(meta[kind.TARGET].numpy())
        predictions.append(np.asarray(probability)[:, 0])
    frame = pd.DataFrame({"item_id": ids, "row": np.concatenate(rows), "fold": np.concatenate(folds),
                          "target": np.concatenate(targets), kind.TARGET: np.concatenate(predictions)})
    held_out = frame[frame["fold"] == recipe.data.fold].sort_values("row")
    training = frame[(frame["fold"] >= 0) & (frame["fold"] != recipe.data.fold)]
    if held_out.empty:
        raise UserError(f"fold {recipe.data.fold} of {data_dir} has no ads")
    _write_csv(os.path.join(model_dir, OOF), held_out[["item_id", "row", "fold", kind.TARGET]])
    _write_csv(os.path.join(model_dir, TEST), frame[frame["fold"] == kind.MISSING].sort_values("row")[
        ["item_id", "row", kind.TARGET]])
    _save_npy(os.path.join(model_dir, FEATURES), features)
    scores = {"rmse": rmse(held_out["target"], held_out[kind.TARGET]),
              "mean_baseline": rmse(held_out["target"], np.full(len(held_out), training["target"].mean()))}
    text = (f"fold {recipe.data.fold} ({len(held_out)} held-out ads): RMSE {scores['rmse']:.4f} "
            f"(the training mean: {scores['mean_baseline']:.4f})")
    return {**scores, "text": text, "ads": len(held_out)}


def expand_runs(patterns: Sequence[str]) -> List[str]:
    """Directories from paths or glob patterns ("runs/nn_center_fold*"), sorted, each once."""
    found: List[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise UserError(f"no directory matches {pattern}")
        found.extend(m for m in matches if m not in found)
    for path in found:
        if not os.path.isdir(path):
            raise UserError(f"not a directory: {path}")
    return found


def training_ads(data_dir: str) -> pd.DataFrame:
    """item_id,row,fold,target of every training ad (from the records), by row."""
    from tfrecords.manifest import compression_type, shard_paths
    from yt8m_keras.data.shards import records

    manifest = read_manifest(data_dir, kind=kind.KIND)
    columns = {k: [] for k in ("item_id", "row", "fold", "target")}
    for batch in records(shard_paths(data_dir, manifest, "train"), compression_type(manifest)).batch(4096).map(
            kind.parse):
        columns["item_id"].extend(v.decode() for v in batch[kind.ITEM_ID].numpy())
        columns["row"].extend(batch[kind.ROW].numpy().tolist())
        columns["fold"].extend(batch[kind.FOLD].numpy().tolist())
        columns["target"].extend(batch[kind.TARGET].numpy().tolist())
    return pd.DataFrame(columns).sort_values("row").reset_index(drop=True)


def first_level(runs: Sequence[str], data_dir: str, output: str) -> Dict:
    """Combines the fold runs of one configuration into a first-level model directory."""
    ads = training_ads(data_dir)
    oof = pd.concat([pd.read_csv(os.path.join(run, OOF), dtype={"item_id": str}) for run in _with_files(runs)])
    counts = oof["row"].value_counts()
    if (counts > 1).any():
        raise UserError(f"{int((counts > 1).sum())} training ads are predicted by more than one run: "
                        "give each fold once")
    missing = sorted(set(ads["row"]) - set(oof["row"]))
    if missing:
        raise UserError(f"{len(missing)} training ads have no out-of-fold prediction: a fold's run is missing "
                        f"(folds present: {sorted(oof['fold'].unique().tolist())})")
    tests = [pd.read_csv(os.path.join(run, TEST), dtype={"item_id": str}).sort_values("row") for run in runs]
    test = tests[0][["item_id", "row"]].copy()
    test[kind.TARGET] = np.mean([t[kind.TARGET].to_numpy() for t in tests], axis=0)
    os.makedirs(output, exist_ok=True)
    _write_csv(os.path.join(output, OOF), oof.sort_values("row")[["item_id", "row", "fold", kind.TARGET]])
    _write_csv(os.path.join(output, TEST), test)
    # Features out of fold: a training ad's from the run that held it out, a test ad's averaged.
    features = [np.load(os.path.join(run, FEATURES), mmap_mode="r") for run in runs]
    combined = np.mean([np.asarray(f, np.float32) for f in features], axis=0)
    for run, f in zip(runs, features):
        rows = pd.read_csv(os.path.join(run, OOF))["row"].to_numpy()
        combined[rows] = f[rows]
    _save_npy(os.path.join(output, FEATURES), combined.astype(np.float16))
    merged = ads.merge(oof[["row", kind.TARGET]], on="row")
    return {"rmse": rmse(merged["target"], merged[kind.TARGET]), "runs": len(runs), "ads": len(merged)}


def _with_files(runs: Sequence[str]) -> Sequence[str]:
    for run in runs:
        for name in (OOF, TEST, FEATURES):
            if not os.path.exists(os.path.join(run, name)):
                raise UserError(f"no {name} in {run}: run `yt8m-keras evaluate --model-dir {run} --data DATA` first")
    return runs


def write_submission(path: str, item_ids: Sequence[str], predictions: np.ndarray) -> None:
    """Kaggle's `item_id,deal_probability`, clipped to [0, 1], sorted by item_id, written atomically."""
    order = np.argsort(np.asarray(item_ids), kind="stable")
    clipped = np.clip(np.asarray(predictions, np.float64), 0.0, 1.0)
    write_text(path, f"item_id,{kind.TARGET}\n" + "".join(f"{item_ids[i]},{clipped[i]:.6f}\n" for i in order))


class AdScorer:
    """Serialized ads -> (item_id, the exported networks' mean deal_probability), via `tf_example`.

    Every signature call has exactly `batch_size` records (`fixed_batches`).
    """

    def __init__(self, model_paths: Sequence[str], batch_size: int):
        import tensorflow_text  # noqa: F401 -- registers the SentencePiece ops the graph uses

        self.signatures = [load_saved_model(path).signatures["tf_example"] for path in model_paths]
        self.batch_size = batch_size

    def __call__(self, records: List[bytes]) -> List[tuple]:
        import tensorflow as tf

        outputs = []
        for signature in self.signatures:
            def call(rows, signature=signature):
                out = signature(tf_example=tf.constant(rows, tf.string))
                return {kind.ITEM_ID: out[kind.ITEM_ID].numpy(), kind.TARGET: out[kind.TARGET].numpy()}

            outputs.append(fixed_batches(call, np.array(records, dtype=object), self.batch_size))
        ids = [v.decode() for v in outputs[0][kind.ITEM_ID]]
        mean = np.mean([o[kind.TARGET] for o in outputs], axis=0)
        return list(zip(ids, mean.tolist()))


class AdSubmission(Submission):
    """`item_id,deal_probability`, sorted by item_id."""

    def write_rows(self, rows: List[tuple], path: str) -> Dict:
        write_submission(path, [item_id for item_id, _ in rows], np.array([p for _, p in rows]))
        return {"ads": len(rows), "text": f"wrote {path}: {len(rows)} ads (the exported networks averaged)"}


def plan(model_paths: Sequence[str], data_dir: str, split: str = "test", batch_size: int = 256):
    """Batch inference of `split` with exported networks (their `tf_example` signature), averaged."""
    from tfrecords.manifest import compression_type, shard_paths

    manifest = read_manifest(data_dir, kind=kind.KIND)
    for path in model_paths:
        require_saved_model(path)  # one clear error now, not on every worker
    return Plan(Files(shard_paths(data_dir, manifest, split), compression_type(manifest)),
                functools.partial(AdScorer, list(model_paths), batch_size), AdSubmission(), batch_size, "ads")


def predict_exported(model_paths: Sequence[str], data_dir: str, output: str, split: str = "test",
                     batch_size: int = 256) -> int:
    """`item_id,deal_probability` of `split` from exported networks (their `tf_example` signature), averaged."""
    return run_local(plan(model_paths, data_dir, split, batch_size), output)["ads"]
