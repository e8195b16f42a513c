"""Dataflow readiness, offline: each Beam job also runs on Beam's portable path, where SDK workers
in other processes have only the built wheel (see conftest.py's `portable_beam`), and writes the
same output as the in-process run (FnApiRunner).

Same output means: the same files, byte for byte (shards, vocabularies, rejected.jsonl, memmaps),
except in JSON files the fields that name the run itself: `command` (the pipeline flags differ)
and, in avito_image_features' info.json, `output` (the output directory).
"""

import filecmp
import json
import os
import struct
import time
from pathlib import Path

import pytest

import beam_jobs
from beam_jobs import common

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

RUN_FIELDS = ("command",)  # JSON fields that record the run itself, so differ between the two runs


def test_workers_run_the_installed_wheel_in_other_processes(portable_beam):
    """The probe pipeline's SDK worker: another process, W's interpreter, the wheel's modules only."""
    workers, counters = portable_beam.probe["workers"], portable_beam.probe["counters"]
    assert workers, "the probe pipeline reported nothing"
    for worker in workers:
        for name, path in worker["files"].items():
            assert common.is_inside(path, portable_beam.site_packages), f"{name} imported from {path}"
        assert worker["pid"] not in (os.getpid(), portable_beam.pool_pid)
        assert os.path.realpath(worker["prefix"]) == os.path.realpath(portable_beam.venv)
        assert not common.is_inside(worker["cwd"], str(REPO))
        assert not [p for p in worker["sys_path"] if p and common.is_inside(p, str(REPO))], worker["sys_path"]
    # Beam counters come back from the job service (the jobs' counters show this way on Dataflow).
    assert counters == {"elements": 3}


def _damage(path):
    """Stray bytes after the 3rd document and the 1st document again at the end (a duplicate _id)."""
    with open(path, "rb") as f:
        data = f.read()
    starts = [0]
    while starts[-1] < len(data) and len(starts) < 4:
        starts.append(starts[-1] + struct.unpack("<i", data[starts[-1]:starts[-1] + 4])[0])
    with open(path, "wb") as f:
        f.write(data[:starts[3]] + b"stray bytes, not a document" + data[starts[3]:] + data[:starts[1]])


def _cdiscount(raw):
    from yt8m_keras.competitions.cdiscount.sample import write_sample

    paths = write_sample(raw, products=120, classes=4, seed=0)
    _damage(paths["train"])
    return ["--input", paths["train"], "--input", paths["test"], "--categories", paths["categories"],
            "--num-shards", "3"]


def _melanoma(raw):
    from yt8m_keras.competitions.melanoma.sample import write_sample

    paths = write_sample(raw, images=40, seed=0)
    return ["--csv", paths["train_csv"], "--images", paths["train_images"], "--csv", paths["test_csv"],
            "--images", paths["test_images"], "--isic2019", paths["isic2019"], "--image-size", "32",
            "--folds", "2", "--shards-per-fold", "2"]


def _youtube8m(raw):
    from yt8m_keras.competitions.youtube8m.sample import write_sample

    paths = write_sample(raw, videos=30, seed=0)
    return ["--input", paths["train"], "--input", paths["validate"], "--input", paths["test"],
            "--vocabulary", paths["segment_vocabulary"], "--classes", paths["vocabulary"]]


def _avito(raw):
    from yt8m_keras.competitions.avito.sample import write_sample

    paths = write_sample(raw, ads=60, seed=0)
    return ["--csv", paths["train_csv"], "--images", paths["train_images"], "--csv", paths["test_csv"],
            "--images", paths["test_images"], "--folds", "2", "--vocab-size", "200"]


def _taxonomy(raw):
    from yt8m_keras.competitions.taxonomy.sample import write_sample

    paths = write_sample(raw, products=60, seed=0)
    return ["--features", paths["train_features"], "--labels", paths["train_labels"],
            "--features", paths["test_features"], "--val-fraction", "0.1", "--vocab-size", "200"]


CONVERSIONS = {"cdiscount": _cdiscount, "melanoma": _melanoma, "youtube8m": _youtube8m, "avito": _avito,
               "taxonomy": _taxonomy}


def _files(directory):
    return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, names in os.walk(directory) for f in names)


def assert_same_output(expected_dir, actual_dir, run_fields=RUN_FIELDS):
    assert _files(actual_dir) == _files(expected_dir)
    for name in _files(expected_dir):
        expected, actual = os.path.join(expected_dir, name), os.path.join(actual_dir, name)
        if name.endswith(".json"):
            with open(expected) as e, open(actual) as a:
                expected_json, actual_json = json.load(e), json.load(a)
            for field in run_fields:
                expected_json.pop(field, None)
                actual_json.pop(field, None)
            assert actual_json == expected_json, name
        else:
            assert filecmp.cmp(expected, actual, shallow=False), f"{name} differs"


def _timed(function, *args):
    start = time.monotonic()
    result = function(*args)
    return result, time.monotonic() - start


def _source_tree_is_imported():
    """The in-process run must use the code the wheel was built from."""
    assert common.is_inside(beam_jobs.__file__, str(REPO)), (
        f"this process imports beam_jobs from {beam_jobs.__file__}, not from {REPO} (the wheel's source): "
        "run `python -m pytest` from the repository root")


@pytest.mark.parametrize("name", sorted(CONVERSIONS))
def test_conversion_portable_equals_in_process(name, portable_pipeline_args, tmp_path):
    from yt8m_keras.convert import convert

    _source_tree_is_imported()
    args = CONVERSIONS[name](str(tmp_path / "raw"))
    local, local_s = _timed(convert, name, args + ["--output", str(tmp_path / "local")])
    portable, portable_s = _timed(convert, name, args + ["--output", str(tmp_path / "portable"),
                                                         *portable_pipeline_args])
    print(f"\n{name}: in-process {local_s:.1f} s, portable {portable_s:.1f} s")
    assert_same_output(str(tmp_path / "local"), str(tmp_path / "portable"))
    assert {k: v for k, v in portable.items() if k != "command"} == {k: v for k, v in local.items() if k != "command"}
    assert "--runner=PortableRunner" in portable["command"]
    written = sum(split["records"] for split in local["splits"].values())
    assert local["input_records"] == written + local["rejected"] + local.get("filtered", 0)
    if name == "cdiscount":  # the damaged stretch and the duplicate _id are dead letters on both paths
        assert local["rejected"] == 2


def test_avito_image_features_portable_equals_in_process(portable_pipeline_args, tmp_path):
    """Batch inference: a CNN SavedModel run by the SDK workers gives the same float16 features."""
    from beam_jobs import avito_image_features
    from yt8m_keras.competitions.avito import cnn
    from yt8m_keras.convert import convert

    _source_tree_is_imported()
    data, model = str(tmp_path / "data"), str(tmp_path / "resnet50-32")
    convert("avito", _avito(str(tmp_path / "raw")) + ["--output", data])
    # ResNet50 with random weights: MobileNetV3's random features underflow to zero in float16.
    cnn.save_backbone(model, backbone="resnet50", weights=None, image_size=32)
    args = ["--data", data, "--model", model, "--batch-size", "8", "--chunk-rows", "16"]
    local, local_s = _timed(avito_image_features.run, args + ["--output", str(tmp_path / "local")])
    portable, portable_s = _timed(avito_image_features.run, args + ["--output", str(tmp_path / "portable"),
                                                                    *portable_pipeline_args])
    print(f"\navito_image_features: in-process {local_s:.1f} s, portable {portable_s:.1f} s")
    assert_same_output(str(tmp_path / "local"), str(tmp_path / "portable"), RUN_FIELDS + ("output",))
    assert local["counts"]["with_features"] > 0


def test_batch_predict_portable_equals_in_process(exported, cdiscount_data, portable_pipeline_args, tmp_path):
    """`python -m beam_jobs.predict`: the SavedModel loaded and the submission merged and written by SDK workers."""
    from beam_jobs.predict import main

    _source_tree_is_imported()
    flags = ["--model", exported, "--data", cdiscount_data[0], "--tta", "1"]
    local, local_s = _timed(main, flags + ["--output", str(tmp_path / "local.csv")])
    portable, portable_s = _timed(main, flags + ["--output", str(tmp_path / "portable.csv"), *portable_pipeline_args])
    assert local == portable == 0
    print(f"\nbatch predict: in-process {local_s:.1f} s, portable {portable_s:.1f} s")
    assert filecmp.cmp(tmp_path / "local.csv", tmp_path / "portable.csv", shallow=False)
    rows = (tmp_path / "portable.csv").read_text().splitlines()[1:]
    assert len(rows) == cdiscount_data[1]["splits"]["test"]["records"]
