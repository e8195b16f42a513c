import csv
import hashlib

import bson
import numpy as np
import tensorflow as tf

from yt8m_keras.competitions.cdiscount import sample as cdiscount


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_sample_is_the_competition_format(cdiscount_raw):
    train = bson.decode_all(open(cdiscount_raw["train"], "rb").read())
    test = bson.decode_all(open(cdiscount_raw["test"], "rb").read())
    assert len(train) == 120 and len(test) == 30
    with open(cdiscount_raw["categories"]) as f:
        categories = {int(row["category_id"]) for row in csv.DictReader(f)}
    assert {d["category_id"] for d in train} <= categories
    assert all("category_id" not in d for d in test)
    assert {d["_id"] for d in train}.isdisjoint(d["_id"] for d in test)
    counts = [len(d["imgs"]) for d in train + test]
    assert min(counts) == 1 and max(counts) == 4
    image = tf.io.decode_jpeg(train[0]["imgs"][0]["picture"])
    assert image.shape == (180, 180, 3)


def test_same_seed_same_bytes(tmp_path):
    a = cdiscount.write_sample(str(tmp_path / "a"), products=6, classes=2, seed=3)
    b = cdiscount.write_sample(str(tmp_path / "b"), products=6, classes=2, seed=3)
    c = cdiscount.write_sample(str(tmp_path / "c"), products=6, classes=2, seed=4)
    assert _digest(a["train"]) == _digest(b["train"]) != _digest(c["train"])


def test_images_vary_within_a_class_and_shapes_differ_between_classes():
    rng = np.random.default_rng(0)
    assert not np.array_equal(cdiscount.render_image(0, rng), cdiscount.render_image(0, rng))
    masks = [cdiscount.class_mask(c, 90, 90, 40) for c in range(len(cdiscount.SHAPES))]
    assert all(not np.array_equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1:])
