"""The Avito network, its preprocessing, and the language model's transfer: shapes, masks, codes."""

import datetime
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import avito_ad as kind
from yt8m_keras.competitions.avito.preprocessing import AvitoPreprocessor, read_assets, vocabulary_file, weekday_of
from yt8m_keras.models.avito_network import build_avito_network, categorical_embedding_dim, features_model
from yt8m_keras.models.lstm_language_model import build_lstm_language_model

SIZES = {"region": 5, "city": 9, "weekday": 8}


def network(image_dim=6, **kwargs):
    return build_avito_network(SIZES, text_vocabulary_size=50, numeric_dim=4, image_dim=image_dim, text_length=10,
                               embedding_dim=8, hidden_dim=12, num_layers=2, units=16, **kwargs)


def inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"region": rng.integers(0, 5, batch), "city": rng.integers(0, 9, batch), "weekday": rng.integers(0, 8, batch),
            "numbers": rng.normal(size=(batch, 4)).astype("float32"),
            "text": np.concatenate([rng.integers(1, 50, (batch, 6)), np.zeros((batch, 4), int)], axis=1),
            "image_features": rng.normal(size=(batch, 6)).astype("float32"),
            "image_mask": np.array([[1.0], [0.0], [1.0]][:batch], "float32")}


def test_shapes_and_output_range():
    model = network()
    x = inputs()
    out = np.asarray(model(x))
    assert out.shape == (3, 1) and ((out > 0) & (out < 1)).all()
    assert features_model(model)(x).shape == (3, 16)
    assert network(image_dim=0)({k: v for k, v in x.items() if not k.startswith("image")}).shape == (3, 1)


def test_missing_picture_changes_nothing_but_the_image_branch():
    model = network()
    x, y = inputs(), inputs()
    y["image_features"] = np.random.default_rng(9).normal(size=(3, 6)).astype("float32") * 10
    a, b = np.asarray(model(x)), np.asarray(model(y))
    assert a[1, 0] == pytest.approx(b[1, 0], abs=1e-7)  # no picture: the features are ignored
    assert abs(a[0, 0] - b[0, 0]) > 1e-6  # a picture: they matter


def test_padding_does_not_change_the_text_encoding():
    model = network()
    x = inputs()
    y = {k: v.copy() for k, v in x.items()}
    y["text"][:, 6:] = 0
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(model(y)), atol=1e-7)


def test_seed_embedding_sizes_scale_with_the_vocabulary():
    assert categorical_embedding_dim("region", 28) == 3 and categorical_embedding_dim("user_type", 3) == 2
    assert categorical_embedding_dim("region", 28 * 16) == 6  # 16 times the values: twice the size


def test_language_model_weights_start_the_text_encoder(tmp_path):
    lm = build_lstm_language_model(50, 8, 12, 2)
    path = str(tmp_path / "lm.weights.h5")
    lm.save_weights(path)
    model = network(language_model=path)
    for name in ("token_embedding", "lstm_0", "lstm_1"):
        for a, b in zip(lm.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert lm(np.ones((2, 7), "int32")).shape == (2, 7, 50)  # tied: logits over the vocabulary


def test_weekday_of_dates_in_the_graph():
    dates = ["2017-03-15", "2017-03-19", "2000-02-29", "1999-12-31", "2017-03-20 10:00:00", "", "15.03.2017"]
    expected = [datetime.date.fromisoformat(d[:10]).weekday() if d[:1] in "12" and "-" in d else -1 for d in dates]
    assert weekday_of(tf.constant(dates)).numpy().tolist() == expected


def test_preprocessor_codes_and_numbers_match_the_conversion(avito_data):
    data, _ = avito_data
    assets = read_assets(data)
    pre = AvitoPreprocessor(**assets, text_length=12)
    region = assets["vocabularies"]["region"]
    raw = {**{c: tf.constant(["", "", ""]) for c in kind.CATEGORICAL},
           "region": tf.constant([region[0], region[-1], "nowhere"]),
           kind.WEEKDAY: tf.constant([0, 6, -1], tf.int64), kind.PRICE: tf.constant([100.0, np.nan, 0.0]),
           kind.ITEM_SEQ_NUMBER: tf.constant([1.0, 5.0, np.nan]),
           kind.TITLE: tf.constant(["Коляска", "", "x"]), kind.DESCRIPTION: tf.constant(["", "", ""])}
    out = pre(raw)
    assert out["region"].numpy().tolist() == [1, len(region), 0]
    assert out["city"].numpy().tolist() == [0, 0, 0]  # empty -> 0
    assert out[kind.WEEKDAY].numpy().tolist() == [1, 7, 0]
    with open(os.path.join(data, "stats.json")) as f:
        stats = json.load(f)["price"]
    numbers = out["numbers"].numpy()
    assert numbers[0, 0] == pytest.approx((np.log1p(100.0) - stats["log1p_mean"]) / stats["log1p_std"], rel=1e-5)
    assert numbers[:, 1].tolist() == [0.0, 1.0, 0.0]  # price missing flag
    assert out["text"].shape == (3, 12) and (out["text"].numpy()[1] == 0).all()
    with open(os.path.join(data, vocabulary_file("region")), encoding="utf-8") as f:
        assert [line.rstrip("\n") for line in f] == region
