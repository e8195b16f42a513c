"""Out-of-fold bookkeeping and the LightGBM stages on converted sample ads (synthetic first-level models)."""

import os

import numpy as np
import pandas as pd
import pytest

from tfrecords import UserError
from tfrecords import avito_ad as kind
from yt8m_keras.competitions.avito.predict import FEATURES, OOF, TEST, first_level, rmse, training_ads
from yt8m_keras.competitions.avito.stacking import ad_table, lgbm_first_level, stack


def fake_fold_runs(data, tmp_path, name, noise, seed=0, units=4):
    """Fold runs as `evaluate` writes them: each fold's held-out ads, every test ad, features of every ad."""
    table = ad_table(data)
    rng = np.random.default_rng(seed)
    train = table[table[kind.FOLD] >= 0]
    test = table[table[kind.FOLD] < 0]
    runs = []
    for fold in sorted(train[kind.FOLD].unique()):
        run = tmp_path / f"{name}_fold{fold}"
        run.mkdir()
        held = train[train[kind.FOLD] == fold]
        pd.DataFrame({"item_id": held[kind.ITEM_ID], "row": held[kind.ROW], "fold": fold,
                      kind.TARGET: np.clip(held[kind.TARGET] + rng.normal(0, noise, len(held)), 0, 1)}).to_csv(
            run / OOF, index=False)
        pd.DataFrame({"item_id": test[kind.ITEM_ID], "row": test[kind.ROW],
                      kind.TARGET: rng.uniform(0, 1, len(test))}).to_csv(run / TEST, index=False)
        np.save(run / FEATURES, rng.normal(size=(len(table), units)).astype(np.float16))
        runs.append(str(run))
    return runs


def test_every_training_ad_is_predicted_exactly_once(avito_data, tmp_path):
    data, _ = avito_data
    runs = fake_fold_runs(data, tmp_path, "nn", noise=0.1)
    result = first_level(runs, data, str(tmp_path / "combined"))
    oof = pd.read_csv(tmp_path / "combined" / OOF, dtype={"item_id": str})
    ads = training_ads(data)
    assert sorted(oof["row"]) == sorted(ads["row"]) and oof["row"].is_unique
    assert result["ads"] == len(ads)
    # Test predictions: the folds' mean; features: a training ad's from the run that held it out.
    tests = [pd.read_csv(os.path.join(r, TEST)) for r in runs]
    combined_test = pd.read_csv(tmp_path / "combined" / TEST)
    np.testing.assert_allclose(combined_test[kind.TARGET], (tests[0][kind.TARGET] + tests[1][kind.TARGET]) / 2,
                               atol=1e-6)
    features = np.load(tmp_path / "combined" / FEATURES)
    held = pd.read_csv(os.path.join(runs[1], OOF))["row"].to_numpy()
    np.testing.assert_array_equal(features[held], np.load(os.path.join(runs[1], FEATURES))[held])
    with pytest.raises(UserError, match="no out-of-fold prediction"):
        first_level(runs[:1], data, str(tmp_path / "one"))
    with pytest.raises(UserError, match="more than one run"):
        first_level([runs[0], runs[0], runs[1]], data, str(tmp_path / "twice"))


def test_lgbm_first_level_beats_the_mean_and_reads_network_features(avito_data, tmp_path):
    data, _ = avito_data
    result = lgbm_first_level(data, str(tmp_path / "tabular"), rounds=60, threads=1)
    truth = training_ads(data)["target"]
    assert result["rmse"] < rmse(truth, np.full(len(truth), truth.mean()))
    assert sorted(f for f in os.listdir(tmp_path / "tabular") if f.endswith(".txt")) == ["lgbm_fold0.txt",
                                                                                         "lgbm_fold1.txt"]
    runs = fake_fold_runs(data, tmp_path, "nn", noise=0.1, units=4)
    with_network = lgbm_first_level(data, str(tmp_path / "with_nn"), network_runs=[str(tmp_path / "nn_fold*")],
                                    rounds=60, threads=1)
    assert with_network["features"] == result["features"] + 4 and len(runs) == 2


def test_stack_reproduces_for_a_seed_and_beats_its_inputs(avito_data, tmp_path):
    data, _ = avito_data
    fake_fold_runs(data, tmp_path, "good", noise=0.15, seed=1)
    fake_fold_runs(data, tmp_path, "other", noise=0.15, seed=2)
    specs = [str(tmp_path / "good_fold*"), str(tmp_path / "other_fold*")]
    first, second = str(tmp_path / "a.csv"), str(tmp_path / "b.csv")
    result = stack(specs, data, first, rounds=80, threads=1)
    stack(specs, data, second, rounds=80, threads=1)
    assert open(first, "rb").read() == open(second, "rb").read()
    assert result["stack"] < min(result["inputs"].values()) < result["scores"]["training mean"]
    submission = pd.read_csv(first, dtype={"item_id": str})
    assert list(submission.columns) == ["item_id", kind.TARGET]
    assert submission[kind.TARGET].between(0, 1).all() and submission["item_id"].is_monotonic_increasing
    assert len(submission) == result["test_ads"]
