import csv
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import avito_image_features as job
from tfrecords import UserError, avito_ad, run_main
from tfrecords.manifest import shard_name, write_manifest
from yt8m_keras.competitions.avito import cnn

BEAM = ["--runner=FnApiRunner"]
SIZE = 32
BATCH = 8
# resnet50: with random weights its pooled features are O(1). mobilenet_v3_small's and
# efficientnet_b0's are ~1e-10 and ~1e-7 there, below float16's resolution (zeros).
BACKBONE = "resnet50"
# Ads: (image_status, picture) where picture is (height, width) or raw bytes.
SQUARE_ROW = 0
WIDE_ROW = 1
UNDECODABLE_ROW = 2


def _picture(rng, height, width) -> bytes:
    coarse = rng.uniform(0, 255, (1, 4, 5, 3)).astype(np.float32)
    image = tf.image.resize(coarse, [height, width], method="bicubic")[0]
    noisy = image + rng.normal(0, 8, image.shape)
    return tf.io.encode_jpeg(tf.cast(tf.clip_by_value(noisy, 0, 255), tf.uint8), quality=90).numpy()


def _ads(count=30, seed=0):
    """count ads in row order: rows 0 and 1 are a square and a wide picture, 2 undecodable,
    then pictures of varied sizes, some ads without one (each status)."""
    rng = np.random.default_rng(seed)
    ads = []
    for row in range(count):
        item_id = f"item{row:04d}"
        if row == SQUARE_ROW:
            ads.append(avito_ad.encode(item_id, "u", row, image=_picture(rng, 40, 40), image_status=avito_ad.IMAGE_OK))
        elif row == WIDE_ROW:
            ads.append(avito_ad.encode(item_id, "u", row, image=_picture(rng, 24, 72), image_status=avito_ad.IMAGE_OK))
        elif row == UNDECODABLE_ROW:
            ads.append(avito_ad.encode(item_id, "u", row, image=b"not a jpeg", image_status=avito_ad.IMAGE_OK))
        elif row % 7 == 3:
            ads.append(avito_ad.encode(item_id, "u", row, image_status=(avito_ad.NO_IMAGE, avito_ad.IMAGE_MISSING,
                                                                        avito_ad.IMAGE_BROKEN)[row % 3],
                                       image_name=f"{item_id}.jpg" if row % 3 else ""))
        else:
            height, width = (int(v) for v in rng.integers(16, 90, 2))
            ads.append(avito_ad.encode(item_id, "u", row, image=_picture(rng, height, width),
                                       image_status=avito_ad.IMAGE_OK))
    return ads


def _write_dataset(directory, ads, seed=0):
    """Shards of a train and a test split, the rows shuffled over them."""
    os.makedirs(directory, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(ads))
    parts = {"train": [order[: len(ads) // 2], order[len(ads) // 2: 3 * len(ads) // 4]],
             "test": [order[3 * len(ads) // 4:]]}
    splits = {}
    for split, shards in parts.items():
        names = [shard_name(split, i, len(shards)) for i in range(len(shards))]
        for name, rows in zip(names, shards):
            with tf.io.TFRecordWriter(os.path.join(directory, name)) as writer:
                for row in rows:
                    writer.write(ads[row])
        splits[split] = {"records": sum(len(rows) for rows in shards), "shards": names}
    write_manifest(directory, {"kind": avito_ad.KIND, "schema_version": avito_ad.SCHEMA_VERSION,
                               "input_records": len(ads), "rejected": 0, "splits": splits})
    return directory


def _parsed(ads):
    return [job.parse_ad(a) for a in ads]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cnn") / "resnet50-32")
    cnn.save_backbone(path, backbone=BACKBONE, weights=None, image_size=SIZE)
    return path


@pytest.fixture(scope="module")
def ads():
    return _ads()


@pytest.fixture(scope="module")
def data(ads, tmp_path_factory):
    return _write_dataset(str(tmp_path_factory.mktemp("avito")), ads)


def _args(data, model, output, *extra):
    return ["--data", data, "--model", model, "--output", output, "--batch-size", str(BATCH), *extra, *BEAM]


@pytest.fixture(scope="module")
def features(data, model):
    # Inside the data directory, as users will put it.
    output = os.path.join(data, "image_features")
    return output, job.run(_args(data, model, output, "--chunk-rows", "5"))


_LOADED = {}


def _direct(model, pixels):
    """Features of a direct call of the SavedModel's signature (loaded once per path)."""
    if model not in _LOADED:
        _LOADED[model] = tf.saved_model.load(model).signatures["serving_default"]
    return _LOADED[model](images=tf.constant(np.stack(pixels)))["features"].numpy()


def test_save_backbone_writes_info_and_signature(model):
    info = cnn.read_info(model)
    assert (info["backbone"], info["weights"], info["image_size"], info["dim"]) == (BACKBONE, None, SIZE, 2048)
    _direct(model, [np.zeros([SIZE, SIZE, 3], np.uint8)])
    serve = _LOADED[model]
    assert serve.structured_input_signature[1]["images"].shape.as_list() == [None, SIZE, SIZE, 3]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    assert serve(images=tf.zeros([3, SIZE, SIZE, 3], tf.uint8))["features"].shape == (3, 2048)
    assert not [n for n in os.listdir(os.path.dirname(model)) if ".tmp-" in n]
    with pytest.raises(UserError, match="already exists"):
        cnn.save_backbone(model, backbone=BACKBONE, image_size=SIZE)
    with pytest.raises(UserError, match="unknown backbone"):
        cnn.save_backbone(model + "-x", backbone="vgg", image_size=SIZE)
    with pytest.raises(UserError, match="weights file not found"):
        cnn.save_backbone(model + "-x", backbone=BACKBONE, weights="/no/such.weights.h5", image_size=SIZE)


def test_preprocessings_center_crop_and_pad_with_black():
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = 200  # the central square is grey, the sides black
    jpeg = tf.io.encode_jpeg(tf.constant(image), quality=100).numpy()
    center, pad = job.preprocess(jpeg, 30)
    assert center.shape == pad.shape == (30, 30, 3) and center.dtype == pad.dtype == np.uint8
    assert abs(center[10:20, 10:20].mean() - 200) < 3  # the crop keeps the middle
    assert pad[:8].max() < 5 and pad[-8:].max() < 5  # black bands above and below
    assert abs(pad[12:18, 12:18].mean() - 200) < 3
    square = tf.io.encode_jpeg(tf.constant(np.full((25, 25, 3), 90, np.uint8))).numpy()
    np.testing.assert_array_equal(*job.preprocess(square, 30))


def test_output_layout_and_counts(ads, features):
    output, info = features
    assert sorted(os.listdir(output)) == ["center.npy", "index.csv", "info.json", "mask.npy", "pad.npy"]
    assert json.load(open(os.path.join(output, "info.json"))) == info
    parsed = _parsed(ads)
    with_picture = [a.row for a in parsed if job.has_picture(a) and a.row != UNDECODABLE_ROW]
    assert info["rows"] == len(ads) and info["dim"] == 2048 and info["backbone"]["backbone"] == BACKBONE
    assert info["counts"] == {
        "ads": len(ads), "with_features": len(with_picture), "image_ok": len(with_picture) + 1, "undecodable": 1,
        "no_image": sum(a.image_status == avito_ad.NO_IMAGE for a in parsed),
        "image_missing": sum(a.image_status == avito_ad.IMAGE_MISSING for a in parsed),
        "image_broken": sum(a.image_status == avito_ad.IMAGE_BROKEN for a in parsed)}
    assert info["counts"]["no_image"] and info["counts"]["image_missing"] and info["counts"]["image_broken"]
    assert set(info["variants"]) == {"center", "pad"} and "black" in info["variants"]["pad"]["preprocessing"]
    for variant in ("center", "pad"):
        array = np.load(os.path.join(output, variant + ".npy"), mmap_mode="r")
        assert isinstance(array, np.memmap) and array.dtype == np.float16 and array.shape == (len(ads), 2048)
    mask = np.load(os.path.join(output, "mask.npy"))
    assert mask.dtype == np.uint8 and np.flatnonzero(mask).tolist() == with_picture


def test_features_equal_a_direct_call_of_the_saved_model(ads, model, features):
    output, _ = features
    parsed = [a for a in _parsed(ads) if job.has_picture(a) and a.row != UNDECODABLE_ROW]
    pixels = [job.preprocess(a.image, SIZE) for a in parsed]
    rows = [a.row for a in parsed]
    for i, variant in enumerate(("center", "pad")):
        expected = _direct(model, [p[i] for p in pixels])
        stored = np.load(os.path.join(output, variant + ".npy"))[rows].astype(np.float32)
        # float16 storage: half an ulp of the value, plus float32 noise of other batch shapes.
        np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3)
        assert np.abs(stored).max() > 0.1


def test_center_and_pad_differ_on_a_non_square_picture(features):
    output, _ = features
    center = np.load(os.path.join(output, "center.npy")).astype(np.float32)
    pad = np.load(os.path.join(output, "pad.npy")).astype(np.float32)
    assert np.abs(center[WIDE_ROW] - pad[WIDE_ROW]).max() > 0.1
    # A square picture gets the same pixels both ways; only other pictures in its batch differ.
    np.testing.assert_allclose(center[SQUARE_ROW], pad[SQUARE_ROW], rtol=2e-3, atol=2e-3)


def test_rows_without_a_picture_are_zero_and_masked(ads, features):
    output, _ = features
    mask = np.load(os.path.join(output, "mask.npy"))
    for variant in ("center", "pad"):
        array = np.load(os.path.join(output, variant + ".npy"))
        assert not array[mask == 0].any()
        assert (np.abs(array[mask == 1]).max(axis=1) > 0).all()
    no_picture = [a.row for a in _parsed(ads) if not job.has_picture(a)] + [UNDECODABLE_ROW]
    assert sorted(np.flatnonzero(mask == 0).tolist()) == sorted(no_picture)


def test_index_csv_lists_every_ad_in_row_order(ads, features):
    output, _ = features
    with open(os.path.join(output, "index.csv"), newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["row", "item_id", "image_status"]
    assert lines[1:] == [[str(a.row), a.item_id, str(a.image_status)] for a in sorted(_parsed(ads))]


def test_rerun_gives_the_same_bytes_and_overwrite_is_needed(data, model, features):
    output, _ = features
    before = {name: open(os.path.join(output, name), "rb").read() for name in os.listdir(output)}
    with pytest.raises(UserError, match="not empty.*--overwrite"):
        job.run(_args(data, model, output, "--chunk-rows", "5"))
    assert {name: open(os.path.join(output, name), "rb").read() for name in os.listdir(output)} == before
    # Other chunks and a stray file: --overwrite replaces everything, and the bytes are the same.
    open(os.path.join(output, "stray.txt"), "w").write("x")
    job.run(_args(data, model, output, "--chunk-rows", "1000", "--overwrite"))
    after = {name: open(os.path.join(output, name), "rb").read() for name in os.listdir(output)}
    assert after.keys() == before.keys() and all(after[n] == before[n] for n in after if n != "info.json")
    info = [json.loads(files["info.json"]) for files in (before, after)]
    assert {**info[1], "command": ""} == {**info[0], "command": ""}  # the command line differs


def test_extract_features_transform(ads, model):
    subset = ads[:12]
    parsed = [a for a in _parsed(subset) if job.has_picture(a) and a.row != UNDECODABLE_ROW]
    pixels = [job.preprocess(a.image, SIZE) for a in parsed]
    expected = {a.row: (_direct(model, [p[0] for p in pixels])[i], _direct(model, [p[1] for p in pixels])[i])
                for i, a in enumerate(parsed)}

    def check(features):
        assert sorted(f.row for f in features) == sorted(expected)
        for f in features:
            assert f.center.dtype == f.pad.dtype == np.float16 and f.center.shape == (2048,)
            np.testing.assert_allclose(f.center.astype(np.float32), expected[f.row][0], rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(f.pad.astype(np.float32), expected[f.row][1], rtol=2e-3, atol=2e-3)

    p = BeamTestPipeline(options=PipelineOptions(BEAM))
    features, index = (p | beam.Create(subset[::-1])
                       | job.ExtractFeatures(model, image_size=SIZE, batch_size=4))
    assert_that(features, check, label="Features")
    assert_that(index, equal_to([job.index_entry(a) for a in _parsed(subset)]), label="Index")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in result.metrics().query(MetricsFilter().with_namespace(job.NAMESPACE))["counters"]}
    no_image = sum(not job.has_picture(a) for a in _parsed(subset))
    # rows 0..11 in batches of 4: each batch has a decodable picture
    assert counters == {"ads": 12, "images": len(expected), "no_image": no_image, "undecodable": 1, "batches": 3}


def test_read_index_checks_every_row_once():
    entry = lambda row, item: {"row": row, "item_id": item, "image_status": 1}  # noqa: E731
    index = job.read_index([entry(1, "b"), entry(0, "a")], 2)
    assert index.item_ids == ["a", "b"] and index.status.tolist() == [1, 1]
    with pytest.raises(UserError, match="row 0 is held by two ads"):
        job.read_index([entry(0, "a"), entry(0, "b")], 2)
    with pytest.raises(UserError, match="1 of 2 rows have no ad .first: row 1"):
        job.read_index([entry(0, "a")], 2)
    with pytest.raises(UserError, match="row 5, outside 0..1"):
        job.read_index([entry(0, "a"), entry(5, "b")], 2)


def test_user_errors(data, model, tmp_path):
    with pytest.raises(UserError, match="no manifest.json in"):
        job.run(_args(str(tmp_path / "missing"), model, str(tmp_path / "o1")))
    with pytest.raises(UserError, match="not a SavedModel directory"):
        job.run(_args(data, str(tmp_path), str(tmp_path / "o2")))
    with pytest.raises(UserError, match="unrecognized arguments: --batch_size"):
        job.run(["--data", data, "--model", model, "--output", str(tmp_path / "o3"), "--batch_size", "3"])
    with pytest.raises(UserError, match="--batch-size must be"):
        job.run(_args(data, model, str(tmp_path / "o4"), "--batch-size", "0"))
    with pytest.raises(UserError, match="is inside the output directory"):
        job.run(_args(data, model, os.path.dirname(data), "--overwrite"))
    assert os.path.exists(os.path.join(data, "manifest.json"))


def test_command_line_prints_one_error_line(model, tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    status = run_main(job.main, ["--data", missing, "--model", model, "--output", str(tmp_path / "out")])
    assert status == 2
    assert capsys.readouterr().err == f"error: no manifest.json in {missing}: is it a converted dataset directory?\n"
    assert run_main(job.main, ["--model", model, "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: the following arguments are required: --data\n"
