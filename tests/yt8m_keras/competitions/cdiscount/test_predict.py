import csv

import pytest

from tfrecords import UserError
from yt8m_keras.competitions.cdiscount.combine import RULES
from yt8m_keras.competitions.cdiscount.predict import evaluate, predict


def test_evaluate_table_has_every_rule_with_and_without_tta(trained_run, cdiscount_data):
    model_dir, _ = trained_run
    data, _ = cdiscount_data
    result = evaluate(model_dir, data, tta=2)
    assert list(result["table"]) == list(RULES)
    for row in result["table"].values():
        assert set(row) == {"no TTA", "TTA x2"} and all(0 <= v <= 1 for v in row.values())
    assert "rule" in result["text"] and "TTA x2" in result["text"]
    assert evaluate(model_dir, data, tta=2)["table"] == result["table"]  # TTA is seeded


def test_predict_writes_one_row_per_test_product(exported, cdiscount_data, tmp_path):
    data, manifest = cdiscount_data
    out = tmp_path / "submission.csv"
    assert predict(exported, data, str(out)) == manifest["splits"]["test"]["records"]
    rows = list(csv.reader(open(out)))
    assert rows[0] == ["_id", "category_id"]
    ids = [int(r[0]) for r in rows[1:]]
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == manifest["splits"]["test"]["records"]
    categories = {int(r["category_id"]) for r in csv.DictReader(open(f"{data}/classes.csv"))}
    assert {int(r[1]) for r in rows[1:]} <= categories
    again = tmp_path / "again.csv"
    predict(exported, data, str(again))
    assert out.read_bytes() == again.read_bytes()


def test_predict_with_tta_and_another_rule(exported, cdiscount_data, tmp_path):
    data, _ = cdiscount_data
    assert predict(exported, data, str(tmp_path / "s.csv"), rule="median", tta=2) > 0


def test_predict_errors(exported, cdiscount_data, tmp_path):
    data, _ = cdiscount_data
    with pytest.raises(UserError, match="--combine: Unknown combination rule .vote."):
        predict(exported, data, str(tmp_path / "s.csv"), rule="vote")
    with pytest.raises(UserError, match="no SavedModel in"):
        predict(str(tmp_path), data, str(tmp_path / "s.csv"))
