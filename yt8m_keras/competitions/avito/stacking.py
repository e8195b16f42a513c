"""Avito stage 4: LightGBM on tabular (+ network) features, and a LightGBM stacker, out of fold.

Both use the conversion's folds (grouped by seller) and LightGBM's own API; boosters are
saved in LightGBM's text format. A fixed number of rounds (no early stopping on the
held-out fold, which would leak it into the out-of-fold score).

    yt8m-keras lgbm --data DATA --output oof/lgbm_tabular [--features 'runs/nn_center_fold*']
    yt8m-keras stack --oof 'runs/nn_center_fold*' --oof 'runs/nn_pad_fold*' --oof oof/lgbm_tabular \\
                     --oof oof/lgbm_nn --data DATA --output submission.csv

Example:

>>> lgbm_first_level("data", "oof/lgbm_tabular")["rmse"]
>>> stack(["oof/nn_center", "oof/lgbm_tabular"], "data", "submission.csv")["text"]
"""

import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from tfrecords import UserError
from tfrecords import avito_ad as kind
from tfrecords.manifest import compression_type, read_manifest, shard_paths
from yt8m_keras.competitions.avito.predict import (FEATURES, OOF, TEST, _write_csv, expand_runs, first_level, rmse,
                                                   write_submission)
from yt8m_keras.competitions.avito.preprocessing import read_assets

FIRST_LEVEL_PARAMS = {"objective": "regression", "metric": "rmse", "learning_rate": 0.05, "num_leaves": 63,
                      "min_data_in_leaf": 20, "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1,
                      "lambda_l2": 1.0, "verbose": -1}
STACKER_PARAMS = {"objective": "regression", "metric": "rmse", "learning_rate": 0.02, "num_leaves": 4,
                  "min_data_in_leaf": 50, "lambda_l2": 10.0, "verbose": -1}


def _params(base: Dict, seed: int, threads: int) -> Dict:
    # deterministic + force_row_wise: the same model for the same seed and thread count.
    return {**base, "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": threads}


def ad_table(data_dir: str) -> pd.DataFrame:
    """Every ad's tabular features by row: categorical columns (the conversion's vocabularies as
    LightGBM categories), numbers, weekday, text lengths, picture status; plus item_id, fold, target."""
    from yt8m_keras.data.shards import records

    manifest = read_manifest(data_dir, kind=kind.KIND)
    paths = [p for split in sorted(manifest["splits"]) for p in shard_paths(data_dir, manifest, split)]
    strings = (kind.ITEM_ID, kind.USER_ID, *kind.CATEGORICAL)
    columns: Dict[str, list] = {k: [] for k in (*strings, kind.ROW, kind.FOLD, kind.TARGET, kind.PRICE,
                                                kind.ITEM_SEQ_NUMBER, kind.WEEKDAY, kind.IMAGE_STATUS,
                                                "title_length", "description_length")}
    for batch in records(paths, compression_type(manifest)).batch(4096).map(kind.parse):
        for key in strings:
            columns[key].extend(v.decode("utf-8") for v in batch[key].numpy())
        for key in (kind.ROW, kind.FOLD, kind.TARGET, kind.PRICE, kind.ITEM_SEQ_NUMBER, kind.WEEKDAY,
                    kind.IMAGE_STATUS):
            columns[key].extend(batch[key].numpy().tolist())
        columns["title_length"].extend(len(v.decode("utf-8")) for v in batch[kind.TITLE].numpy())
        columns["description_length"].extend(len(v.decode("utf-8")) for v in batch[kind.DESCRIPTION].numpy())
    table = pd.DataFrame(columns).sort_values(kind.ROW).reset_index(drop=True)
    vocabularies = read_assets(data_dir)["vocabularies"]
    for column in kind.CATEGORICAL:  # fixed categories: the same codes in every fold and at test time
        table[column] = pd.Categorical(table[column], categories=vocabularies[column])
    table["log_price"] = np.log1p(table[kind.PRICE])
    return table


TABULAR = (*kind.CATEGORICAL, "log_price", kind.ITEM_SEQ_NUMBER, kind.WEEKDAY, kind.IMAGE_STATUS, "title_length",
           "description_length")


def _out_of_fold(x: pd.DataFrame, table: pd.DataFrame, params: Dict, rounds: int, output: str,
                 prefix: str) -> Dict:
    """Fold-by-fold LightGBM: each training ad predicted by the booster that did not see it; test averaged."""
    import lightgbm

    train = table[kind.FOLD].to_numpy() >= 0
    folds = sorted(int(f) for f in np.unique(table[kind.FOLD][train]))
    oof = np.full(len(table), np.nan)
    test = np.zeros(int((~train).sum()))
    for fold in folds:
        fit = train & (table[kind.FOLD].to_numpy() != fold)
        held_out = table[kind.FOLD].to_numpy() == fold
        booster = lightgbm.train(params, lightgbm.Dataset(x[fit], table[kind.TARGET][fit]), num_boost_round=rounds)
        booster.save_model(os.path.join(output, f"{prefix}_fold{fold}.txt"))
        oof[held_out] = booster.predict(x[held_out])
        if (~train).any():
            test += booster.predict(x[~train]) / len(folds)
    return {"oof": oof, "test": test, "train": train, "folds": folds}


def _write_first_level(output: str, table: pd.DataFrame, result: Dict) -> float:
    train = result["train"]
    oof = table[train][[kind.ITEM_ID, kind.ROW, kind.FOLD]].rename(columns={kind.ITEM_ID: "item_id", kind.ROW: "row",
                                                                            kind.FOLD: "fold"})
    oof[kind.TARGET] = result["oof"][train]
    _write_csv(os.path.join(output, OOF), oof)
    test = table[~train][[kind.ITEM_ID, kind.ROW]].rename(columns={kind.ITEM_ID: "item_id", kind.ROW: "row"})
    test[kind.TARGET] = result["test"]
    _write_csv(os.path.join(output, TEST), test)
    return rmse(table[kind.TARGET][train], result["oof"][train])


def lgbm_first_level(data_dir: str, output: str, network_runs: Sequence[str] = (), rounds: int = 300,
                     seed: int = 0, threads: int = 0) -> Dict:
    """LightGBM on the tabular features (plus the network's out-of-fold features when runs are given)."""
    table = ad_table(data_dir)
    x = table[list(TABULAR)].copy()
    os.makedirs(output, exist_ok=True)
    if network_runs:
        runs = expand_runs(network_runs)
        combined = os.path.join(output, "network")
        first_level(runs, data_dir, combined)
        features = np.load(os.path.join(combined, FEATURES), mmap_mode="r")
        if len(features) != len(table):
            raise UserError(f"the network's features have {len(features)} rows, the data {len(table)} ads")
        hidden = pd.DataFrame(np.asarray(features, np.float32)[table[kind.ROW].to_numpy()],
                              columns=[f"nn_{i}" for i in range(features.shape[1])])
        x = pd.concat([x.reset_index(drop=True), hidden], axis=1)
    result = _out_of_fold(x, table, _params(FIRST_LEVEL_PARAMS, seed, threads), rounds, output, "lgbm")
    return {"rmse": _write_first_level(output, table, result), "features": x.shape[1], "folds": len(result["folds"])}


def _first_level_dir(spec: str, data_dir: str, scratch: str) -> str:
    """A first-level model directory: as given (has oof.csv), or fold runs combined into `scratch`."""
    if not any(ch in spec for ch in "*?[") and os.path.exists(os.path.join(spec, OOF)) and \
            not os.path.exists(os.path.join(spec, "recipe.yaml")):
        return spec
    first_level(expand_runs([spec]), data_dir, scratch)
    return scratch


def stack(oof_specs: Sequence[str], data_dir: str, output: str, rounds: int = 200, seed: int = 0,
          threads: int = 0) -> Dict:
    """The LightGBM stacker over first-level out-of-fold predictions; writes the submission; RMSE table."""
    if len(oof_specs) < 1:
        raise UserError("give at least one --oof")
    table = ad_table(data_dir)[[kind.ITEM_ID, kind.USER_ID, kind.ROW, kind.FOLD, kind.TARGET]]
    train = table[kind.FOLD].to_numpy() >= 0
    work = os.path.splitext(output)[0] + "_stack"
    os.makedirs(work, exist_ok=True)
    names: List[str] = []
    x = pd.DataFrame(index=range(len(table)))
    for i, spec in enumerate(oof_specs):
        directory = _first_level_dir(spec, data_dir, os.path.join(work, f"level1_{i}"))
        # LightGBM refuses JSON's special characters in feature names.
        name = f"m{i}_" + re.sub(r"[^A-Za-z0-9_]+", "_", os.path.basename(spec.rstrip("/*?"))).strip("_")
        oof = pd.read_csv(os.path.join(directory, OOF), dtype={"item_id": str})
        test = pd.read_csv(os.path.join(directory, TEST), dtype={"item_id": str})
        column = pd.concat([oof, test])[["row", kind.TARGET]].set_index("row")[kind.TARGET]
        if column.index.duplicated().any() or len(column) != len(table):
            raise UserError(f"{spec}: its predictions cover {len(column)} ads, the data has {len(table)}")
        x[name] = column.reindex(table[kind.ROW].to_numpy()).to_numpy()
        names.append(name)
    # Monotone: a higher first-level prediction never lowers the stack's (the stacker
    # learns how much to trust each model where, not to invert one).
    params = {**_params(STACKER_PARAMS, seed, threads), "monotone_constraints": [1] * len(names)}
    # Boosted from the first-level models' mean, with its rounds chosen by cross-validation on
    # its own training ads (possibly none: then the stack is the mean). A stacker fitted freely
    # on a few thousand ads overfits their noise; on Kaggle's 1.5M it earns many rounds.
    mean = x[names].mean(axis=1).to_numpy()
    target, folds, users = table[kind.TARGET].to_numpy(), table[kind.FOLD].to_numpy(), table[kind.USER_ID].to_numpy()
    oof = np.full(len(table), np.nan)
    chosen = {}
    for fold in sorted(int(f) for f in np.unique(folds[train])):
        fit, held_out = train & (folds != fold), folds == fold
        booster, chosen[fold] = _boost_from(x[fit], target[fit], mean[fit], users[fit], params, rounds)
        oof[held_out] = mean[held_out] + (booster.predict(x[held_out]) if booster else 0.0)
        if booster:
            booster.save_model(os.path.join(work, f"stacker_fold{fold}.txt"))
    final, final_rounds = _boost_from(x[train], target[train], mean[train], users[train], params, rounds)
    if final:
        final.save_model(os.path.join(work, "stacker_all.txt"))
    predictions = mean[~train] + (final.predict(x[~train]) if final else 0.0)
    write_submission(output, table[kind.ITEM_ID][~train].tolist(), predictions)
    result = {"oof": oof}
    truth = table[kind.TARGET][train].to_numpy()
    scores = {"training mean": rmse(truth, np.full(len(truth), truth.mean()))}
    scores.update({name: rmse(truth, x[name][train]) for name in names})
    scores["mean of the models"] = rmse(truth, mean[train])
    scores[f"stack ({final_rounds} rounds over the mean)"] = rmse(truth, result["oof"][train])
    width = max(len(n) for n in scores) + 2
    text = "\n".join([f"{'out-of-fold RMSE':<{width}}{len(truth)} training ads"] +
                     [f"{name:<{width}}{value:.4f}" for name, value in scores.items()])
    return {"scores": scores, "text": text, "submission": output, "test_ads": int((~train).sum()),
            "train_mean": float(truth.mean()), "stack": rmse(truth, result["oof"][train]),
            "inputs": {name: scores[name] for name in names}, "rounds": {"folds": chosen, "final": final_rounds}}


def _boost_from(x: pd.DataFrame, y: np.ndarray, init: np.ndarray, users: np.ndarray, params: Dict,
                max_rounds: int):
    """(booster or None, rounds): LightGBM on the residual of `init`, rounds by 4-fold CV (0 if none clearly helps).

    The inner folds are grouped by seller too: a seller's ads share an effect, and folds that
    split them would reward rounds that only memorise sellers.
    """
    import lightgbm
    from sklearn.model_selection import GroupKFold

    dataset = lightgbm.Dataset(x, y, init_score=init, free_raw_data=False)
    folds = list(GroupKFold(n_splits=min(4, len(np.unique(users)))).split(x, y, users))
    curve = lightgbm.cv(params, dataset, num_boost_round=max_rounds, folds=folds,
                        callbacks=[lightgbm.early_stopping(20, verbose=False)])
    means = np.asarray(next(v for k, v in curve.items() if k.endswith("rmse-mean")))
    stdvs = np.asarray(next(v for k, v in curve.items() if k.endswith("rmse-stdv")))
    # Breiman's one-standard-error rule: the fewest rounds whose CV error is within one
    # standard error of the best; none when the mean alone is.
    best = int(np.argmin(means))
    threshold = means[best] + stdvs[best] / np.sqrt(len(folds))
    if rmse(y, init) <= threshold:
        return None, 0
    best = int(np.argmax(means <= threshold))
    return lightgbm.train(params, dataset, num_boost_round=best + 1), best + 1


def read_submission(path: str) -> Optional[pd.DataFrame]:
    return pd.read_csv(path, dtype={"item_id": str})
