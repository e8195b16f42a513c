"""Chris Deotte's TFRecords, written here with plain TensorFlow code in his naming, train as they are."""

import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma import input as data
from yt8m_keras.recipes import load_recipe
from yt8m_keras.train import train

DIAGNOSES = ["nevus", "melanoma", "seborrheic keratosis", "unknown", "lentigo NOS", "cafe-au-lait macule"]


def _feature_int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _feature_bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


@pytest.fixture(scope="module")
def deotte_dir(tmp_path_factory):
    """4 train shards (2 folds of 2) of 32 px images + his processed train.csv; one row marked -1."""
    out = tmp_path_factory.mktemp("deotte")
    rng = np.random.default_rng(0)
    rows, per_shard = [], {i: [] for i in range(4)}
    for i in range(48):
        diagnosis = DIAGNOSES[i % len(DIAGNOSES)]
        target = int(diagnosis == "melanoma")
        shard = (i // 2) % 4  # a patient's two images share a shard
        name = f"ISIC_{i:07d}"
        colour = [200, 40, 40] if target else [60, 60, 200]
        image = np.clip(rng.normal(colour, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        jpeg = tf.io.encode_jpeg(image).numpy()
        # His integer codes: sex 0/1, site and diagnosis from his label encoders.
        example = tf.train.Example(features=tf.train.Features(feature={
            "image": _feature_bytes(jpeg), "image_name": _feature_bytes(name.encode()),
            "patient_id": _feature_int(i // 2), "sex": _feature_int(i % 2), "age_approx": _feature_int(40 + i % 30),
            "anatom_site_general_challenge": _feature_int(i % 6), "diagnosis": _feature_int(i % len(DIAGNOSES)),
            "target": _feature_int(target)}))
        per_shard[shard].append(example.SerializeToString())
        rows.append({"image_name": name, "patient_id": f"IP_{i // 2:07d}", "sex": ["female", "male"][i % 2],
                     "age_approx": str(40 + i % 30), "anatom_site_general_challenge": kind.SITES[i % 6],
                     "diagnosis": diagnosis, "benign_malignant": "malignant" if target else "benign",
                     "target": target, "tfrecord": -1 if i == 5 else shard, "width": 6000, "height": 4000})
    for shard, records in per_shard.items():
        with tf.io.TFRecordWriter(str(out / ("train%.2i-%i.tfrec" % (shard, len(records))))) as writer:
            for record in records:
                writer.write(record)
    with open(out / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(out), rows


def test_folds_targets_and_dropped_duplicates(deotte_dir):
    directory, rows = deotte_dir
    src = data.source(directory)
    assert data.fold_paths(src, 1, validation=True, folds=2) == [p for p, _ in src.train[2:]]
    seen = {}
    for batch in data.eval_dataset(directory, "val", 8, 32, fold=0, folds=2):
        for name, index in zip(batch[kind.IMAGE_NAME].numpy(), batch[kind.CLASS_INDEX].numpy()):
            seen[name.decode()] = int(index)
    expected = {r["image_name"]: kind.class_of(r["diagnosis"]) for r in rows
                if r["tfrecord"] in (0, 1)}
    assert seen == expected  # fold 0 = shards 0 and 1; the -1 row is gone; 9-class targets
    assert "ISIC_0000005" not in seen and rows[5]["tfrecord"] == -1
    assert kind.CLASSES[seen["ISIC_0000010"]] == "BKL"  # "lentigo NOS" -> BKL
    assert kind.CLASSES[seen["ISIC_0000011"]] == "unknown"  # "cafe-au-lait macule"


def test_metadata_comes_from_his_csv(deotte_dir):
    directory, rows = deotte_dir
    batch = next(iter(data.eval_dataset(directory, "val", 4, 32, fold=1, folds=2)))
    name = batch[kind.IMAGE_NAME].numpy()[0].decode()
    row = next(r for r in rows if r["image_name"] == name)
    meta = batch["metadata"].numpy()[0]
    assert meta[0] == (1.0 if row["sex"] == "male" else 0.0)
    assert meta[1] == pytest.approx(int(row["age_approx"]) / 90)
    assert meta[2 + kind.SITES.index(row["anatom_site_general_challenge"])] == 1.0
    assert meta[-2] == pytest.approx(np.log1p(2))  # two images per patient in his CSV


def test_his_shards_train_as_they_are(deotte_dir, tmp_path):
    directory, _ = deotte_dir
    recipe = load_recipe("melanoma_effnet:tiny", ["data.image_size=32", "data.folds=2", "data.fold=1",
                                                   "training.steps_per_epoch=2",
                                                   "training.epochs=1", "training.batch_size=8"])
    result = train(recipe, directory, str(tmp_path / "model"), verbose=0)
    assert result["step"] == 2 and "val_auc" in result["history"]


@pytest.mark.slow  # about a minute: three runs trace the whole augmentation stack
def test_exact_resume_with_augmentation_on_the_model(deotte_dir, tmp_path, monkeypatch):
    from preemption import Preempted, preempt_after, weights_file_arrays

    directory, _ = deotte_dir
    recipe = load_recipe("melanoma_effnet:tiny", ["data.image_size=32", "data.folds=2", "data.fold=0",
                                                   "training.steps_per_epoch=3", "training.epochs=2",
                                                   "training.batch_size=4", "training.backup_every_steps=2"])
    assert recipe.data.augment  # the augmentation's seed states must survive the restart
    train(recipe, directory, str(tmp_path / "whole"), verbose=0)
    preempt_after(monkeypatch, 5)  # the second epoch, after the backup at step 4
    with pytest.raises(Preempted):
        train(recipe, directory, str(tmp_path / "cut"), verbose=0)
    monkeypatch.undo()
    train(recipe, directory, str(tmp_path / "cut"), verbose=0)
    whole = weights_file_arrays(tmp_path / "whole" / "final.weights.h5")
    cut = weights_file_arrays(tmp_path / "cut" / "final.weights.h5")
    assert whole.keys() == cut.keys()
    for name in whole:
        np.testing.assert_allclose(cut[name], whole[name], rtol=0, atol=1e-6, err_msg=name)
