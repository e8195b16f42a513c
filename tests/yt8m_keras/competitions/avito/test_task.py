"""The Avito stages end to end on sample ads: CNN features, language model, network, evaluation, export."""

import csv
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrecords import avito_ad as kind
from yt8m_keras.competitions.avito.predict import OOF, TEST, evaluate, predict_exported
from batch_predict_check import assert_beam_job_matches_predict

STEPS = ["training.batch_size=16", "training.steps_per_epoch=4", "training.epochs=2", "training.backup_every_steps=4",
         "data.folds=2", "data.text_length=24", "data.shuffle_buffer=64"]


@pytest.fixture(scope="module")
def featured(avito_data):
    """The sample with ResNet50 features (random weights, 32 px) from the Beam job."""
    from yt8m_keras.competitions.avito.competition import run_features

    data, raw = avito_data
    info = run_features(data, backbone="resnet50", image_size=32, batch_size=32, overwrite=True,
                        pipeline_args=["--runner=FnApiRunner"])
    return data, raw, info


@pytest.fixture(scope="module")
def language_model(featured, tmp_path_factory):
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    run = str(tmp_path_factory.mktemp("avito_lm"))
    train(load_recipe("avito_lm:tiny", STEPS), featured[0], run, verbose=0)
    return run


@pytest.fixture(scope="module")
def network_run(featured, language_model, tmp_path_factory):
    from yt8m_keras.recipes import load_recipe
    from yt8m_keras.train import train

    run = str(tmp_path_factory.mktemp("avito_nn"))
    train(load_recipe("avito_nn:tiny", STEPS + [f"model.args.language_model={language_model}"]), featured[0], run,
          verbose=0)
    return run


def test_features_cover_every_ad(featured):
    data, _, info = featured
    mask = np.load(os.path.join(data, "image_features", "mask.npy"))
    counts = info["counts"]
    assert len(mask) == counts["ads"] and int(mask.sum()) == counts["with_features"]
    assert counts["image_missing"] > 0 or counts["image_broken"] > 0 or counts["no_image"] > 0


def test_language_model_reports_perplexity(featured, language_model):
    from yt8m_keras.competitions.avito.competition import _evaluate_language_model

    text = _evaluate_language_model(language_model, featured[0])
    perplexity = float(text.split("validation perplexity ")[1].split()[0])
    unigram = float(text.split("a unigram model of the training text: ")[1].split(";")[0])
    # The evaluation reloads the best checkpoint: it reproduces the best validation perplexity
    # the training log recorded for that fold.
    logged = pd.read_csv(os.path.join(language_model, "training_log.csv"))["val_perplexity"].min()
    assert perplexity == pytest.approx(logged, rel=1e-3)
    assert np.isfinite(unigram) and unigram > 1


def test_evaluate_writes_out_of_fold_files(featured, network_run):
    data, _, _ = featured
    result = evaluate(network_run, data)
    oof = pd.read_csv(os.path.join(network_run, OOF), dtype={"item_id": str})
    assert (oof["fold"] == 0).all() and len(oof) == result["ads"]
    test = pd.read_csv(os.path.join(network_run, TEST), dtype={"item_id": str})
    features = np.load(os.path.join(network_run, "features.npy"))
    assert features.shape[0] == len(oof) + len(test) + int((pd.read_csv(os.path.join(data, "folds.csv"))["fold"]
                                                              == 1).sum())
    assert np.isfinite(result["rmse"]) and np.isfinite(result["mean_baseline"])


@pytest.fixture(scope="module")
def exported(network_run, tmp_path_factory):
    from yt8m_keras.export import export

    return export(network_run, str(tmp_path_factory.mktemp("avito_export")), name="nn")


def test_export_takes_raw_fields_and_records(featured, network_run, exported, tmp_path):
    import tensorflow_text  # noqa: F401

    data, raw, _ = featured
    loaded = tf.saved_model.load(exported)
    rows = list(csv.DictReader(open(raw["test_csv"], encoding="utf-8")))[:5]

    def jpeg(row):
        path = os.path.join(raw["test_images"], f"{row['image']}.jpg")
        if not row["image"] or not os.path.exists(path):
            return b""
        content = open(path, "rb").read()
        try:
            tf.io.decode_jpeg(content)
            return content
        except tf.errors.InvalidArgumentError:
            return b""

    inputs = {name: tf.constant([row.get(name, "") for row in rows]) for name in
              ("title", "description", *kind.CATEGORICAL, "activation_date")}
    inputs["image"] = tf.constant([jpeg(row) for row in rows])
    inputs["price"] = tf.constant([float(row["price"]) if row["price"] else np.nan for row in rows], tf.float32)
    inputs["item_seq_number"] = tf.constant([float(row["item_seq_number"]) for row in rows], tf.float32)
    served = loaded.signatures["serving_default"](**inputs)[kind.TARGET].numpy()
    # The same ads through the records: the tf_example signature and evaluate's test predictions.
    submission = str(tmp_path / "submission.csv")
    predict_exported([exported], data, submission)
    predicted = pd.read_csv(submission, dtype={"item_id": str}).set_index("item_id")[kind.TARGET]
    expected = pd.read_csv(os.path.join(network_run, TEST), dtype={"item_id": str}).set_index("item_id")[kind.TARGET]
    # Float16 memmap features (training, evaluate) against float32 CNN features in the graph.
    np.testing.assert_allclose(predicted.loc[expected.index], expected, atol=2e-3)
    np.testing.assert_allclose(served, predicted.loc[[row["item_id"] for row in rows]], atol=2e-3)


def test_features_of_a_missing_directory_is_one_error_and_writes_nothing(tmp_path):
    from tfrecords import UserError
    from yt8m_keras.competitions.avito.competition import run_features

    missing = tmp_path / "no_data"
    with pytest.raises(UserError, match="no manifest.json"):
        run_features(str(missing), backbone="resnet50", image_size=32)
    assert not missing.exists()


@pytest.mark.slow
def test_beam_job_writes_the_predict_submission(exported, featured, tmp_path):
    written = assert_beam_job_matches_predict(["--model", exported, "--data", featured[0]], tmp_path)
    assert written.startswith(b"item_id,deal_probability\n")
