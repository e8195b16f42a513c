"""Shared melanoma fixtures: a directory of Chris Deotte's shards written with plain TensorFlow code."""

import csv

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import melanoma_image as kind

DIAGNOSES = ["nevus", "melanoma", "seborrheic keratosis", "unknown", "lentigo NOS", "cafe-au-lait macule"]


def _feature_int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _feature_bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


@pytest.fixture(scope="session")
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


TINY = ["data.image_size=32", "data.folds=2", "data.fold=1", "training.steps_per_epoch=2", "training.epochs=1",
        "training.batch_size=8"]


@pytest.fixture(scope="session")
def melanoma_run(deotte_dir, tmp_path_factory):
    """The tiny recipe (augmentation on) trained for two steps on Deotte's shards: (model_dir, recipe, result)."""
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    recipe = load_recipe("melanoma_effnet:tiny", TINY)
    model_dir = str(tmp_path_factory.mktemp("melanoma_model"))
    return model_dir, recipe, train(recipe, deotte_dir[0], model_dir, verbose=0)
