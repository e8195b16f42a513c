import os
import subprocess

import bson
import numpy as np
import pytest
import tensorflow as tf

from tfrecords import UserError, cdiscount_product as kind
from yt8m_keras.competitions.cdiscount.combine import combine
from yt8m_keras.data.images import decode
from yt8m_keras.export import WARMUP_FILE, export
from yt8m_keras.train import load_trained


def _jpegs(cdiscount_raw, n):
    documents = bson.decode_all(open(cdiscount_raw["train"], "rb").read())[:n]
    return documents, [img["picture"] for d in documents for img in d["imgs"]]


def test_layout_and_signatures(exported):
    assert exported.endswith(os.path.join("cdiscount", "1"))
    loaded = tf.saved_model.load(exported)
    assert set(loaded.signatures) == {"serving_default", "products", "pixels"}
    assert os.path.exists(os.path.join(exported, "assets.extra", "classes.csv"))


def test_serving_default_matches_the_keras_model(exported, trained_run, cdiscount_raw):
    model_dir, recipe = trained_run
    _, jpegs = _jpegs(cdiscount_raw, 4)
    _, classes, model = load_trained(model_dir)
    size = recipe.data.image_size
    pixels = tf.stack([decode(j, size) for j in jpegs])
    expected = model.predict_on_batch(pixels)
    served = tf.saved_model.load(exported).signatures["serving_default"](image_bytes=tf.constant(jpegs))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    top = np.argsort(-expected, axis=1, kind="stable")[:, : served["category_ids"].shape[1]]
    category_ids = np.array([c["category_id"] for c in classes])
    np.testing.assert_array_equal(served["category_ids"].numpy(), category_ids[top])
    np.testing.assert_allclose(served["scores"].numpy(), np.take_along_axis(expected, top, 1), atol=1e-5)


def test_products_signature_parses_records_and_combines(exported, trained_run, cdiscount_raw):
    model_dir, recipe = trained_run
    documents, _ = _jpegs(cdiscount_raw, 5)
    records = [kind.encode(d["_id"], [img["picture"] for img in d["imgs"]]) for d in documents]
    _, _, model = load_trained(model_dir)
    images = [img["picture"] for d in documents for img in d["imgs"]]
    index = np.repeat(np.arange(len(documents)), [len(d["imgs"]) for d in documents])
    per_image = model.predict_on_batch(tf.stack([decode(j, recipe.data.image_size) for j in images]))
    expected = combine(per_image, index, recipe.export.combine)
    served = tf.saved_model.load(exported).signatures["products"](tf_example=tf.constant(records))
    np.testing.assert_array_equal(served["product_id"].numpy(), [d["_id"] for d in documents])
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)


def test_warmup_requests_are_serving_protos(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported, "assets.extra", WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == \
        ["pixels", "products", "serving_default"]
    loaded = tf.saved_model.load(exported)
    for log in logs:  # each warmup request really runs
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert all(np.isfinite(v.numpy()).all() for v in outputs.values() if v.dtype.is_floating)


def test_saved_model_cli_lists_the_signatures(exported):
    result = subprocess.run(["saved_model_cli", "show", "--dir", exported, "--all"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("serving_default", "products", "pixels", "image_bytes", "tf_example"):
        assert name in result.stdout


def test_versions(trained_run, tmp_path):
    model_dir, _ = trained_run
    assert export(model_dir, str(tmp_path), name="m").endswith(os.path.join("m", "1"))
    assert export(model_dir, str(tmp_path), name="m").endswith(os.path.join("m", "2"))
    with pytest.raises(UserError, match="already exists"):
        export(model_dir, str(tmp_path), name="m", version=2)
    with pytest.raises(UserError, match="is it a directory written by `yt8m-keras train`"):
        export(str(tmp_path), str(tmp_path / "out"))
