import csv
import hashlib
import os

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma import sample


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return sample.write_sample(str(tmp_path_factory.mktemp("melanoma_raw")), images=120, seed=0)


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _digests(directory):
    return {name: hashlib.sha256(open(os.path.join(directory, name), "rb").read()).hexdigest()
            for name in sorted(os.listdir(directory))}


def test_kaggle_layout_and_columns(raw):
    columns, train = _rows(raw["train_csv"])
    assert tuple(columns) == sample.TRAIN_COLUMNS and len(train) == 120
    columns, test = _rows(raw["test_csv"])
    assert tuple(columns) == sample.TEST_COLUMNS and len(test) == 30
    columns, truth = _rows(raw["isic2019_ground_truth"])
    assert tuple(columns) == sample.GROUND_TRUTH_COLUMNS and len(truth) == 60
    columns, metadata = _rows(raw["isic2019_metadata"])
    assert tuple(columns) == sample.METADATA_COLUMNS and [r["image"] for r in metadata] == [r["image"] for r in truth]
    assert raw["isic2019"] == os.path.join(os.path.dirname(raw["train_csv"]), "isic2019")
    for rows, key, folder in ((train, "image_name", "train_images"), (test, "image_name", "test_images"),
                              (truth, "image", "isic2019_images")):
        names = [r[key] for r in rows]
        assert names == sorted(names)
        assert sorted(os.listdir(raw[folder])) == [n + ".jpg" for n in names]
    names = [r["image_name"] for r in train + test] + [r["image"] for r in truth]
    assert len(set(names)) == len(names)
    # One 1.0 per 2019 row, never UNK (as in the real ground truth); every class there.
    marked = [[c for c in sample.GROUND_TRUTH_COLUMNS[1:] if r[c] == "1.0"] for r in truth]
    assert all(len(m) == 1 and m[0] != "UNK" for m in marked)
    assert {m[0] for m in marked} == set(sample.GROUND_TRUTH_COLUMNS[1:-1])
    assert all(r[c] in ("0.0", "1.0") for r in truth for c in sample.GROUND_TRUTH_COLUMNS[1:])


def test_labels_patients_and_missing_values_look_like_the_competition(raw):
    _, train = _rows(raw["train_csv"])
    _, test = _rows(raw["test_csv"])
    _, metadata = _rows(raw["isic2019_metadata"])
    assert all(r["diagnosis"] in kind.DIAGNOSIS_2020 for r in train)
    assert all((r["diagnosis"] == "melanoma") == (r["target"] == "1") == (r["benign_malignant"] == "malignant")
               for r in train)
    share = np.mean([r["target"] == "1" for r in train])
    assert 0.12 <= share <= 0.28, share  # documented: ~20 %, far above the real 1.8 %
    for rows in (train, test):
        per_patient = {}
        for r in rows:
            per_patient[r["patient_id"]] = per_patient.get(r["patient_id"], 0) + 1
        assert min(per_patient.values()) >= 1 and max(per_patient.values()) <= sample.MAX_PATIENT_IMAGES
        assert len(per_patient) >= 5
    assert {r["patient_id"] for r in train}.isdisjoint(r["patient_id"] for r in test)
    assert {r["sex"] for r in train + test} <= {"", "male", "female"}
    assert all(r["age_approx"] == "" or float(r["age_approx"]) % 5 == 0 for r in train + test + metadata)
    # Missing values here and there, in both years.
    assert any(not r[c] for r in train + test for c in ("sex", "age_approx", "anatom_site_general_challenge"))
    assert any(not r[c] for r in metadata for c in ("sex", "age_approx", "anatom_site_general"))
    assert {r["anatom_site_general"] for r in metadata} - {""} <= set(kind.SITES) | set(kind.SITE_ALIASES)
    assert any(r["anatom_site_general"] in kind.SITE_ALIASES for r in metadata)


def test_images_vary_in_size_and_aspect(raw):
    sizes = []
    for folder in ("train_images", "test_images", "isic2019_images"):
        for name in sorted(os.listdir(raw[folder]))[:25]:
            with Image.open(os.path.join(raw[folder], name)) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                sizes.append(image.size)
    assert len(set(sizes)) > 40
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)
    originals = [s for s in sizes if min(s) >= sample.MIN_SIDE]
    assert all(max(s) <= sample.MAX_SIDE for s in sizes) and len(originals) > len(sizes) * 0.8


def test_planted_duplicates_are_transformed_copies(raw):
    _, planted = _rows(raw["planted_duplicates"])
    assert len(planted) == 4  # images // 25, at least 3
    assert {(p["original_source"], p["copy_source"]) for p in planted} == {("2020", "2020"), ("2020", "2019")}
    folders = {"2020": raw["train_images"], "2019": raw["isic2019_images"]}
    for p in planted:
        with Image.open(os.path.join(folders[p["original_source"]], p["original"] + ".jpg")) as original:
            pixels = original.convert("RGB")
        with Image.open(os.path.join(folders[p["copy_source"]], p["copy"] + ".jpg")) as copy:
            copy = copy.convert("RGB")
        transform = p["transform"].split("+")[0]
        assert transform in sample.TRANSFORMS
        expected = pixels.transpose(getattr(Image.Transpose, transform.upper())).resize(copy.size)
        difference = np.abs(np.asarray(expected, np.float32) - np.asarray(copy, np.float32)).mean()
        assert difference < 6, (p, difference)
    # A copy keeps its original's label.
    _, train = _rows(raw["train_csv"])
    _, truth = _rows(raw["isic2019_ground_truth"])
    label = {r["image_name"]: kind.class_of(r["diagnosis"]) for r in train}
    label.update({r["image"]: kind.class_of(next(c for c in sample.GROUND_TRUTH_COLUMNS[1:] if r[c] == "1.0"),
                                            kind.SOURCE_2019) for r in truth})
    assert all(label[p["original"]] == label[p["copy"]] for p in planted)


def test_same_seed_same_bytes(tmp_path):
    a = sample.write_sample(str(tmp_path / "a"), images=20, seed=3, isic2019=False)
    b = sample.write_sample(str(tmp_path / "b"), images=20, seed=3, isic2019=False)
    c = sample.write_sample(str(tmp_path / "c"), images=20, seed=4, isic2019=False)
    assert "isic2019" not in a
    assert open(a["train_csv"]).read() == open(b["train_csv"]).read() != open(c["train_csv"]).read()
    assert _digests(a["train_images"]) == _digests(b["train_images"]) != _digests(c["train_images"])
    with pytest.raises(ValueError, match="at least 20"):
        sample.write_sample(str(tmp_path / "d"), images=10)


def _colour_histogram(image: np.ndarray) -> np.ndarray:
    counts, _ = np.histogramdd(image.reshape(-1, 3) / 255.0, bins=(4, 4, 4), range=((0, 1),) * 3)
    return np.log1p(counts.ravel())


def test_classes_are_learnable_from_the_pictures():
    """A linear model on colour histograms tells the 9 classes apart (chance: 11 %)."""
    rng = np.random.default_rng(0)
    features, labels = [], []
    for label, name in enumerate(kind.CLASSES):
        for _ in range(20):
            width, height = sample._size(rng)
            features.append(_colour_histogram(sample.render_lesion(name, width, height, rng)))
            labels.append(label)
    features, labels = np.array(features), np.array(labels)
    predicted = cross_val_predict(LogisticRegression(max_iter=2000), features, labels, cv=3)
    assert (predicted == labels).mean() >= 0.7
    assert (predicted[labels == kind.MELANOMA] == kind.MELANOMA).mean() >= 0.8
