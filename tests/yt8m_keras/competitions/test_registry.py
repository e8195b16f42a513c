"""The competitions wing: a new competition touches no shared file, and the core names none."""

import csv
import os
import pathlib

import pytest
from module_imports import imports

from yt8m_keras import competitions
from yt8m_keras.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[3]
TOY_RECIPE = str(ROOT / "tests" / "toy_competition" / "toy.yaml")


@pytest.fixture
def toy(monkeypatch):
    """The toy competition (tests/toy_competition/), registered as a plugin would be."""
    monkeypatch.setitem(competitions.COMPETITIONS, "toy", "toy_competition.competition")


def test_toy_competition_runs_end_to_end_through_the_cli(toy, tmp_path, capsys):
    raw, data, model_dir, exports = (str(tmp_path / d) for d in ("raw", "data", "model", "export"))
    assert main(["sample", "toy", "--output", raw, "--points", "300"]) == 0
    assert main(["convert", "toy", "--input", os.path.join(raw, "points.csv"), "--output", data]) == 0
    assert main(["train", "--recipe", TOY_RECIPE, "--data", data, "--model-dir", model_dir]) == 0
    assert main(["export", "--model-dir", model_dir, "--export-dir", exports]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model-dir", model_dir, "--data", data]) == 0
    accuracy = float(capsys.readouterr().out.split("toy accuracy ")[1].split()[0])
    assert accuracy > 0.8  # three well-separated clusters; chance is 1/3
    output = str(tmp_path / "submission.csv")
    assert main(["predict", "--model", os.path.join(exports, "toy", "1"), "--data", data, "--output", output]) == 0
    rows = list(csv.DictReader(open(output)))
    assert len(rows) == 50 and {r["category_id"] for r in rows} <= {"100", "101", "102"}


def test_toy_competition_flags_and_names_reach_the_cli(toy, capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "--points" in capsys.readouterr().out
    assert competitions.converters()["toy"] == ("toy_competition.convert", "toy points CSV")
    assert competitions.predict_outputs()["points"].NAME == "toy"
    assert competitions.get_task("toy").MONITOR == "val_accuracy"


def test_registry_names_and_aliases():
    assert competitions.names() == ["avito", "cdiscount", "melanoma", "taxonomy", "youtube8m"]
    assert competitions.get("yt8m") is competitions.get("youtube8m")
    jobs = competitions.converters()
    assert jobs["bson"] == jobs["cdiscount"] and jobs["frames"] == jobs["youtube8m"] == jobs["yt8m"]
    assert jobs["melanoma"] == jobs["melanoma_jpeg"] == ("beam_jobs.melanoma_to_tfrecords",
                                                         "SIIM-ISIC JPEG folders + CSVs (2020, 2019)")
    assert competitions.competition_of_task("yt8m_segment").NAME == "youtube8m"
    assert competitions.competition_of_task("melanoma").NAME == "melanoma"


def _files(folder: str, exclude=()):
    return [p for p in sorted((ROOT / folder).rglob("*.py")) if not any(part in exclude for part in p.parts)]


def test_the_shared_core_imports_no_competition():
    core = _files("yt8m_keras", exclude=("competitions",)) + [ROOT / "yt8m_keras/competitions/__init__.py"]
    assert len(core) > 10
    assert "yt8m_keras.competitions" in set(imports(ROOT / "yt8m_keras/cli.py"))  # lazy imports are seen
    offending = [(str(path.relative_to(ROOT)), name) for path in core for name in imports(path)
                 if name.startswith("yt8m_keras.competitions.")
                 and name.split(".")[2] in set(competitions.COMPETITIONS)]
    assert offending == []


def test_dependency_direction_of_the_packages():
    # tfrecords <- beam_jobs (never Keras: Dataflow workers stay lean) ; tfrecords <- yt8m_keras.
    for folder, forbidden in (("tfrecords", ("beam_jobs", "yt8m_keras", "keras", "apache_beam")),
                              ("beam_jobs", ("yt8m_keras", "keras", "keras_hub"))):
        offending = [(str(p.relative_to(ROOT)), n) for p in _files(folder) for n in imports(p)
                     if n.split(".")[0] in forbidden]
        assert offending == [], folder
