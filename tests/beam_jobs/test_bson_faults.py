"""Fault tests of the BSON conversion: damaged bytes, undecodable pictures, repeated ids, bad categories.

Each test writes real BSON (bson.encode) holding real JPEGs to tmp_path, damages it the
way disks, copies and scrapers do, runs the real job and checks that every good
product is written, every damaged thing is one dead letter, and
input_records == written + rejected.
"""

import json
import os
import struct
import sys

import bson
import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import bson_to_tfrecords as job
from beam_jobs import common
from beam_jobs.cdiscount_products import read_categories
from tfrecords import UserError
from tfrecords import cdiscount_product as kind
from tfrecords.manifest import REJECTED

# Real pictures, tiny so that a thousand products convert in a few seconds.
JPEGS = [tf.io.encode_jpeg(np.full((8, 8, 3), 60 * k, np.uint8)).numpy() for k in range(3)]


def _product(i, labelled=True):
    document = {"_id": i, "imgs": [{"picture": JPEGS[i % 3]}] * (1 + i % 2)}
    if labelled:
        document["category_id"] = 100 + i % 3
    return document


def _convert(tmp_path, inputs, *flags):
    out = tmp_path / "out"
    args = [a for path in inputs for a in ("--input", str(path))]
    manifest = job.run(args + ["--output", str(out), "--runner=FnApiRunner", "--num-shards", "3", *flags])
    return out, manifest


def _rejected(out):
    return [json.loads(line) for line in (out / REJECTED).read_text().splitlines()]


def _written(out, manifest):
    """product_id -> (category_id, images) over every split; each product must appear once."""
    products = {}
    for info in manifest["splits"].values():
        for shard in info["shards"]:
            for record in tf.data.TFRecordDataset(os.path.join(out, shard)):
                features = kind.parse(record)
                product_id = int(features[kind.PRODUCT_ID])
                assert product_id not in products, f"product {product_id} written twice"
                products[product_id] = (int(features[kind.CATEGORY_ID]), features[kind.IMAGES].numpy().tolist())
    return products


def _check_counts(manifest, written, rejected):
    assert sum(s["records"] for s in manifest["splits"].values()) == len(written)
    assert manifest["rejected"] == len(rejected)
    assert manifest["input_records"] == len(written) + len(rejected)


def test_stray_bytes_after_document_10_cost_only_themselves(tmp_path):
    blobs = [bson.encode(_product(i)) for i in range(1000)]
    path = tmp_path / "train.bson"
    path.write_bytes(b"".join(blobs[:10]) + bytes(range(60, 97)) + b"".join(blobs[10:]))
    out, manifest = _convert(tmp_path, [path])
    written, rejected = _written(out, manifest), _rejected(out)
    assert sorted(written) == list(range(1000))
    assert all(written[i][1] == [JPEGS[i % 3]] * (1 + i % 2) for i in written)
    [gap] = rejected
    assert gap["file"] == str(path) and gap["_id"] is None
    assert (gap["offset"], gap["length"]) == (sum(len(b) for b in blobs[:10]), 37)
    assert "skipped 37 bytes to the next document" in gap["reason"]
    _check_counts(manifest, written, rejected)
    assert manifest["input_records"] == 1001 and manifest["inputs"][0]["damaged_stretches"] == 1
    assert len(np.load(out / "index" / "train.bson.index.npy")) == 1000


@pytest.mark.parametrize("length", [0, 3, -7, "past the end of the file"])
def test_bad_length_prefix_in_the_middle_costs_one_product(tmp_path, length):
    blobs = [bson.encode(_product(i)) for i in range(1000)]
    at = sum(len(b) for b in blobs[:500])
    data = bytearray(b"".join(blobs))
    data[at:at + 4] = struct.pack("<i", len(data) - at + 10 if isinstance(length, str) else length)
    path = tmp_path / "train.bson"
    path.write_bytes(bytes(data))
    out, manifest = _convert(tmp_path, [path])
    written, rejected = _written(out, manifest), _rejected(out)
    assert sorted(written) == [i for i in range(1000) if i != 500]
    [gap] = rejected
    assert (gap["offset"], gap["length"], gap["_id"]) == (at, len(blobs[500]), None)
    _check_counts(manifest, written, rejected)
    assert manifest["input_records"] == 1000


def test_pictures_are_decoded_as_training_decodes_them(tmp_path):
    """A truncated JPEG, or FF D8 FF and junk, passed the old magic-bytes check and crashed training."""
    documents = [_product(i) for i in range(12)]
    documents[3]["imgs"] = [{"picture": JPEGS[0]}, {"picture": JPEGS[1][:len(JPEGS[1]) // 2]}]
    documents[7]["imgs"] = [{"picture": b"\xff\xd8\xff" + b"not a picture" * 10}]
    blobs = [bson.encode(d) for d in documents]
    path = tmp_path / "train.bson"
    path.write_bytes(b"".join(blobs))
    out, manifest = _convert(tmp_path, [path])
    written, rejected = _written(out, manifest), _rejected(out)
    assert sorted(written) == [i for i in range(12) if i not in (3, 7)]
    assert [(r["_id"], r["offset"]) for r in rejected] == [(3, sum(map(len, blobs[:3]))), (7, sum(map(len, blobs[:7])))]
    assert rejected[0]["reason"].startswith("imgs[1].picture does not decode: ")
    assert rejected[1]["reason"].startswith("imgs[0].picture does not decode: ")
    assert all("Invalid JPEG data" in r["reason"] for r in rejected)
    for _, images in written.values():
        for image in images:
            assert tf.io.decode_jpeg(image, channels=3).shape == (8, 8, 3)
    _check_counts(manifest, written, rejected)


def test_duplicate_ids_keep_the_first_and_reject_the_others(tmp_path):
    train_docs = [_product(i) for i in range(30)]
    # Later copies of 5 (another category) and 12 (twice), and a product whose only valid copy is its second.
    train_docs += [{**_product(5), "category_id": 101}, _product(12), _product(12),
                   {"_id": 40, "category_id": 100, "imgs": []}, _product(40)]
    test_docs = [_product(i, labelled=False) for i in (100, 101, 7, 102)]
    train, test = tmp_path / "train.bson", tmp_path / "test.bson"
    train_blobs = [bson.encode(d) for d in train_docs]
    test_blobs = [bson.encode(d) for d in test_docs]
    train.write_bytes(b"".join(train_blobs))
    test.write_bytes(b"".join(test_blobs))
    offsets = {"train": np.cumsum([0] + [len(b) for b in train_blobs]).tolist(),
               "test": np.cumsum([0] + [len(b) for b in test_blobs]).tolist()}

    out, manifest = _convert(tmp_path, [train, test])
    written, rejected = _written(out, manifest), _rejected(out)
    assert sorted(written) == list(range(30)) + [40, 100, 101, 102]
    assert written[5][0] == 100 + 5 % 3 and written[7][0] == 100 + 7 % 3  # the first copies
    first = lambda i: f"{train}:{offsets['train'][i]}"  # noqa: E731
    assert [(r["file"], r["offset"], r["_id"], r["reason"]) for r in rejected] == [
        (str(test), offsets["test"][2], 7, f"duplicate _id 7 (first at {first(7)})"),
        (str(train), offsets["train"][30], 5, f"duplicate _id 5 (first at {first(5)})"),
        (str(train), offsets["train"][31], 12, f"duplicate _id 12 (first at {first(12)})"),
        (str(train), offsets["train"][32], 12, f"duplicate _id 12 (first at {first(12)})"),
        (str(train), offsets["train"][33], 40, "no images: 'imgs' is missing or empty"),
    ]
    _check_counts(manifest, written, rejected)
    labelled = sum(info["records"] for split, info in manifest["splits"].items() if split != "test")
    assert labelled == 31 and manifest["splits"]["test"]["records"] == 3


def test_categories_with_a_repeated_id_are_refused(tmp_path):
    path = tmp_path / "categories.csv"
    path.write_text("category_id,category_level1\n100,A\n101,B\n100,C\n")
    with pytest.raises(UserError, match=rf"{path}:4: duplicate category_id 100 \(first on line 2\)"):
        read_categories(str(path))


def test_categories_with_only_a_header_are_refused(tmp_path):
    path = tmp_path / "categories.csv"
    path.write_text("category_id,category_level1,category_level2,category_level3\n")
    with pytest.raises(UserError, match="has a header but no categories"):
        read_categories(str(path))


def test_bad_categories_are_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "train.bson").write_bytes(bson.encode(_product(1)))
    (tmp_path / "categories.csv").write_text("category_id,category_level1\n")
    monkeypatch.setattr(sys, "argv", ["bson_to_tfrecords", "--input", str(tmp_path / "train.bson"),
                                      "--output", str(tmp_path / "out"), "--categories",
                                      str(tmp_path / "categories.csv"), "--runner=FnApiRunner"])
    assert common.run_installed("beam_jobs.bson_to_tfrecords") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no categories" in err[0]
    assert not (tmp_path / "out").exists()
