import json

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import UserError, cdiscount_product as kind, manifest as layout

JPEGS = [b"\xff\xd8\xff first", b"\xff\xd8\xff second"]


def test_round_trip_one_record():
    features = kind.parse(tf.constant(kind.encode(7, JPEGS, category_id=1000010653, label=3)))
    assert int(features[kind.PRODUCT_ID]) == 7
    assert int(features[kind.CATEGORY_ID]) == 1000010653
    assert int(features[kind.LABEL]) == 3
    assert int(features[kind.NUM_IMAGES]) == 2
    assert features[kind.IMAGES].numpy().tolist() == JPEGS


def test_round_trip_batch_is_ragged_and_unknown_label_defaults():
    batch = tf.constant([kind.encode(1, JPEGS[:1]), kind.encode(2, JPEGS, 5, 0)])
    features = kind.parse(batch)
    assert features[kind.IMAGES].to_list() == [JPEGS[:1], JPEGS]
    assert features[kind.LABEL].numpy().tolist() == [kind.UNKNOWN, 0]
    assert features[kind.CATEGORY_ID].numpy().tolist() == [kind.UNKNOWN, 5]


def test_parse_inside_tf_function_matches_eager():
    records = tf.constant([kind.encode(i, JPEGS[: 1 + i % 2], 10 + i, i) for i in range(4)])
    eager = kind.parse(records)
    traced = tf.function(kind.parse)(records)
    np.testing.assert_array_equal(eager[kind.LABEL], traced[kind.LABEL])
    assert eager[kind.IMAGES].to_list() == traced[kind.IMAGES].to_list()


@pytest.mark.parametrize("images", [[], JPEGS * 3])
def test_encode_refuses_wrong_image_counts(images):
    with pytest.raises(ValueError, match="1 to 4 images"):
        kind.encode(1, images)


def test_manifest_refuses_lost_records(tmp_path):
    manifest = {"input_records": 10, "rejected": 1, "splits": {"train": {"records": 8, "shards": []}}}
    with pytest.raises(RuntimeError, match="records were lost"):
        layout.write_manifest(str(tmp_path), manifest)
    manifest["rejected"] = 2
    layout.write_manifest(str(tmp_path), manifest)
    assert json.loads((tmp_path / layout.MANIFEST).read_text())["input_records"] == 10


def test_read_manifest_checks_kind_and_version(tmp_path):
    with pytest.raises(UserError, match="no manifest.json"):
        layout.read_manifest(str(tmp_path))
    (tmp_path / layout.MANIFEST).write_text(json.dumps({"kind": "other", "schema_version": 1, "splits": {}}))
    with pytest.raises(UserError, match="expected 'cdiscount_product'"):
        layout.read_manifest(str(tmp_path), kind.KIND)
    (tmp_path / layout.MANIFEST).write_text(json.dumps({"kind": kind.KIND, "schema_version": 0, "splits": {}}))
    with pytest.raises(UserError, match="schema version 0"):
        layout.read_manifest(str(tmp_path), kind.KIND, kind.SCHEMA_VERSION)


def test_shard_names():
    assert layout.shard_name("train", 3, 12) == "train-00003-of-00012.tfrecord"
    assert layout.shard_name("val", 0, 1, "gzip") == "val-00000-of-00001.tfrecord.gz"


@pytest.mark.slow  # two more Python processes
def test_encoding_does_not_depend_on_the_process_hash_seed():
    import os
    import subprocess
    import sys

    # Map fields of a proto serialize in hash order unless asked not to.
    code = f"import sys; from tfrecords import cdiscount_product as k; sys.stdout.write(k.encode(7, {JPEGS!r}, 3, 1).hex())"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert outputs == {kind.encode(7, JPEGS, 3, 1).hex()}
