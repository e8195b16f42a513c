import collections
import json
import os

import apache_beam as beam
import bson
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import bson_to_tfrecords as job
from beam_jobs.bson_index import build_index
from beam_jobs.cdiscount_products import validation_count
from tfrecords import cdiscount_product as kind
from tfrecords.manifest import REJECTED, read_classes, read_manifest

# A real picture: the converter decodes every JPEG as training will.
JPEG = tf.io.encode_jpeg(np.full((4, 4, 3), 128, np.uint8)).numpy()


def _pipeline():
    return BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def _read_split(out, manifest, split):
    products = {}
    compression = "GZIP" if manifest["compression"] == "gzip" else ""
    for shard in manifest["splits"].get(split, {"shards": []})["shards"]:
        for record in tf.data.TFRecordDataset(os.path.join(out, shard), compression_type=compression):
            features = kind.parse(record)
            products[int(features[kind.PRODUCT_ID])] = (
                int(features[kind.CATEGORY_ID]), int(features[kind.LABEL]), features[kind.IMAGES].numpy().tolist())
    return products


def _corrupt_bson(path):
    """Good products around every kind of bad document, and a truncated tail.

    The first bad thing is 32 bytes of junk behind a plausible length prefix: the index
    walk steps over it as a damaged stretch; the others are documents it locates.
    """
    good = [{"_id": i, "category_id": 100 + i % 2, "imgs": [{"picture": JPEG}] * (1 + i % 3)} for i in range(6)]
    blobs = [bson.encode(d) for d in good[:3]]
    garbage = b"\x20\x00\x00\x00" + b"\xee" * 28  # a plausible length prefix, then junk
    bad = [garbage,
           bson.encode({"_id": 50, "category_id": 100}),
           bson.encode({"_id": 51, "category_id": 100, "imgs": []}),
           bson.encode({"_id": 52, "category_id": 101, "imgs": [{"picture": JPEG}, {"picture": b"GIF89a"}]})]
    tail = bson.encode(good[0])[:-10]
    data = b"".join(blobs + bad + [bson.encode(d) for d in good[3:]]) + tail
    path.write_bytes(data)
    offsets = [sum(len(b) for b in blobs)]
    for b in bad[:-1]:
        offsets.append(offsets[-1] + len(b))
    return good, offsets, len(data) - len(tail)


def test_scan_products_rejects_bad_documents_and_keeps_good_ones(tmp_path):
    path = tmp_path / "corrupt.bson"
    good, bad_offsets, tail_offset = _corrupt_bson(path)
    index, gaps = build_index(str(path))
    assert [g.offset for g in gaps] == [bad_offsets[0], tail_offset]
    chunks = job.plan_chunks([str(path)], [index], num_shards=2, gaps=[gaps])
    with _pipeline() as p:
        labelled, rejected, skipped = p | beam.Create(chunks) | job.ScanProducts(seed=0)
        assert_that(labelled | "Categories" >> beam.Keys(),
                    equal_to([d["category_id"] for d in good]), label="labelled")
        assert_that(skipped | "Offsets" >> beam.Values(), equal_to(bad_offsets[1:]), label="skipped")
        assert_that(rejected | beam.Map(lambda r: (r["offset"], r["_id"], r["reason"].split(":")[0])), equal_to([
            (bad_offsets[1], 50, "no images"),
            (bad_offsets[2], 51, "no images"),
            (bad_offsets[3], 52, "imgs[1].picture is not a JPEG"),
        ]), label="rejected")


def test_choose_validation_takes_round_fraction_per_category():
    pairs = [(c, (h, 0, h)) for c, n in ((1, 25), (2, 10), (3, 3), (4, 15)) for h in range(n)]
    with _pipeline() as p:
        stats = p | beam.Create(pairs) | job.ChooseValidation(0.1)
        assert_that(stats | beam.MapTuple(lambda c, s: (c, s.products, s.val, s.threshold)), equal_to([
            (1, 25, 3, (2, 0, 2)), (2, 10, 1, (0, 0, 0)), (3, 3, 0, None), (4, 15, 2, (1, 0, 1))]))


def test_corrupt_file_gives_dead_letters_and_keeps_every_good_record(tmp_path):
    path = tmp_path / "corrupt.bson"
    good, bad_offsets, tail_offset = _corrupt_bson(path)
    out = tmp_path / "out"
    manifest = job.run(["--input", str(path), "--output", str(out), "--runner=FnApiRunner", "--num-shards", "2"])
    lines = [json.loads(line) for line in (out / REJECTED).read_text().splitlines()]
    assert [r["offset"] for r in lines] == bad_offsets + [tail_offset]
    assert "no document of 32 bytes here" in lines[0]["reason"] and lines[0]["length"] == 32
    assert "truncated document" in lines[-1]["reason"]
    assert all(r["file"] == str(path) for r in lines)
    written = {**_read_split(str(out), manifest, "train"), **_read_split(str(out), manifest, "val")}
    assert sorted(written) == [d["_id"] for d in good]
    assert all(written[d["_id"]][2] == [JPEG] * len(d["imgs"]) for d in good)
    assert manifest["input_records"] == 6 + 4 + 1 == sum(s["records"] for s in manifest["splits"].values()) + manifest["rejected"]


def test_sample_conversion_keeps_everything(cdiscount_raw, cdiscount_data):
    out, manifest = cdiscount_data
    assert manifest == read_manifest(out, kind.KIND, kind.SCHEMA_VERSION)
    source = {d["_id"]: d for name in ("train", "test") for d in bson.decode_all(open(cdiscount_raw[name], "rb").read())}
    assert manifest["input_records"] == len(source) and manifest["rejected"] == 0
    classes = read_classes(out)
    assert [c["category_id"] for c in classes] == sorted(c["category_id"] for c in classes)
    assert classes[0]["category_level1"].startswith("UNIVERS")
    label_of = {c["category_id"]: c["class_index"] for c in classes}
    seen = {}
    for split in ("train", "val", "test"):
        products = _read_split(out, manifest, split)
        assert len(products) == manifest["splits"][split]["records"]
        for product_id, (category_id, label, images) in products.items():
            document = source[product_id]
            assert images == [img["picture"] for img in document["imgs"]]
            if split == "test":
                assert "category_id" not in document and (category_id, label) == (kind.UNKNOWN, kind.UNKNOWN)
            else:
                assert category_id == document["category_id"] and label == label_of[category_id]
            seen[product_id] = split
    assert sorted(seen) == sorted(source)


def test_validation_is_stratified_and_seeded(cdiscount_raw, cdiscount_data, tmp_path):
    out, manifest = cdiscount_data
    train, val = (_read_split(out, manifest, s) for s in ("train", "val"))
    per_category = collections.Counter(c for c, _, _ in train.values()) + collections.Counter(c for c, _, _ in val.values())
    val_per_category = collections.Counter(c for c, _, _ in val.values())
    for category, n in per_category.items():
        if n >= 10:
            assert abs(val_per_category[category] - validation_count(n, 0.1)) <= 1
            assert val_per_category[category] >= 1
    args = ["--input", cdiscount_raw["train"], "--runner=FnApiRunner", "--overwrite"]
    again = job.run(args + ["--output", str(tmp_path / "same")])
    other = job.run(args + ["--output", str(tmp_path / "other"), "--seed", "5"])
    assert set(_read_split(str(tmp_path / "same"), again, "val")) == set(val)
    assert set(_read_split(str(tmp_path / "other"), other, "val")) != set(val)


def test_shards_and_gzip(cdiscount_raw, tmp_path):
    manifest = job.run(["--input", cdiscount_raw["train"], "--output", str(tmp_path), "--num-shards", "3",
                        "--compression", "gzip", "--runner=FnApiRunner"])
    shards = manifest["splits"]["train"]["shards"]
    assert shards == [f"train-{i:05d}-of-{len(shards):05d}.tfrecord.gz" for i in range(len(shards))]
    assert 2 <= len(shards) <= 3
    assert len(_read_split(str(tmp_path), manifest, "train")) == manifest["splits"]["train"]["records"]
    assert (tmp_path / "index" / "train.bson.index.npy").exists()
    assert not (tmp_path / "_tmp").exists()


def test_unknown_category_is_rejected(cdiscount_raw, tmp_path):
    categories = tmp_path / "categories.csv"
    lines = open(cdiscount_raw["categories"]).read().splitlines()
    categories.write_text("\n".join(lines[:-1]) + "\n")  # drop the last category
    dropped = int(lines[-1].split(",")[0])
    manifest = job.run(["--input", cdiscount_raw["train"], "--output", str(tmp_path / "out"),
                        "--categories", str(categories), "--runner=FnApiRunner"])
    rejected = [json.loads(l) for l in (tmp_path / "out" / REJECTED).read_text().splitlines()]
    assert rejected and all(f"category_id {dropped} is not in" in r["reason"] for r in rejected)
    assert manifest["num_classes"] == len(lines) - 2
    assert manifest["input_records"] == sum(s["records"] for s in manifest["splits"].values()) + len(rejected)


@pytest.mark.parametrize("args, message", [
    (["--input", "/no/such.bson", "--output", "OUT"], "input not found"),
    (["--input", "TRAIN", "--output", "OUT", "--val-fraction", "1"], "--val-fraction must be in (0, 1)"),
    (["--input", "TRAIN", "--output", "OUT", "--num-shards", "0"], "--num-shards must be at least 1"),
    (["--output", "OUT"], "the following arguments are required: --input"),
])
def test_flag_errors(cdiscount_raw, tmp_path, args, message):
    from tfrecords import UserError

    args = [a.replace("TRAIN", cdiscount_raw["train"]).replace("OUT", str(tmp_path)) for a in args]
    with pytest.raises(UserError) as error:
        job.run(args)
    assert message in str(error.value)


def test_refuses_non_empty_output_without_overwrite(cdiscount_raw, tmp_path):
    from tfrecords import UserError

    (tmp_path / "something").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        job.run(["--input", cdiscount_raw["train"], "--output", str(tmp_path)])
    assert (tmp_path / "something").exists()
