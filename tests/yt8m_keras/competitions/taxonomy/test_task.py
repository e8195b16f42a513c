"""The taxonomy task end to end on the sample: decoding, evaluation, export round trip, prediction."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import product_text as kind
from yt8m_keras.competitions.taxonomy.decoding import TaxonomyDecoder
from yt8m_keras.competitions.taxonomy.hierarchy import TAXONOMY, read_taxonomy
from yt8m_keras.competitions.taxonomy.input import read_split, training_example
from yt8m_keras.competitions.taxonomy.predict import evaluate, predict, read_labels, scores
from batch_predict_check import assert_beam_job_matches_predict


@pytest.fixture(scope="module")
def decoder(taxonomy_run, taxonomy_data):
    from yt8m_keras.train import load_trained

    recipe, _, model = load_trained(taxonomy_run)
    taxonomy = read_taxonomy(os.path.join(taxonomy_data[0], TAXONOMY))
    return TaxonomyDecoder(model, taxonomy, model.encoder_length, model.decoder_length, batch_size=8)


@pytest.fixture(scope="module")
def exported(taxonomy_run, tmp_path_factory):
    from yt8m_keras.export import export

    return export(taxonomy_run, str(tmp_path_factory.mktemp("taxonomy_export")), name="t5")


def test_training_example_shifts_the_target_behind_the_start_token(decoder):
    features = {kind.DESCRIPTION: tf.constant(["milk 1L"]), kind.RETAILER: tf.constant(["retailer_1"]),
                kind.PRICE: tf.constant([1.5]), **{k: tf.constant([v]) for k, v in
                                                   zip(kind.LABELS, decoder.taxonomy.paths[0])}}
    inputs, target, weights = training_example(decoder.tokenizer, features, 48, 32)
    target, weights = target.numpy()[0], weights.numpy()[0]
    n = int(weights.sum())
    assert target[n - 1] == 1 and (target[n:] == 0).all()  # ends with </s>, then padding
    assert list(target[:n]) == decoder.paths[0]  # the path's tokens as the trie holds them
    decoder_ids = inputs["decoder_token_ids"].numpy()[0]
    assert decoder_ids[0] == 0 and list(decoder_ids[1:n]) == list(target[:n - 1])
    assert inputs["decoder_padding_mask"].numpy()[0].sum() == n


def test_tokenizer_round_trips_every_target(decoder):
    assert decoder.texts([p + [0] * 3 for p in decoder.paths]) == \
        [kind.target_text(p) for p in decoder.taxonomy.paths]


@pytest.mark.slow  # by default, test_evaluate_... checks the same on every validation line
def test_constrained_outputs_are_valid_paths_and_greedy_matches_where_valid(decoder, taxonomy_data):
    rows = [r for r in read_split(taxonomy_data[0], "val")][:24]
    encoded = decoder.encode(rows)
    free = decoder.labels(decoder.generate(encoded, constrained=False), "unconstrained")
    for beams in (1, 3):
        constrained = decoder.labels(decoder.generate(encoded, constrained=True, beams=beams), "constrained")
        assert all(decoder.taxonomy.is_valid(p) for p in constrained)
    greedy = decoder.labels(decoder.generate(encoded, constrained=True, beams=1), "constrained")
    # Where the model's own greedy output is a valid path, constraining changes nothing.
    for f, c in zip(free, greedy):
        if decoder.taxonomy.is_valid(f):
            assert f == c


@pytest.mark.parametrize("beams", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_evaluate_reports_three_decodings_and_the_baseline(taxonomy_run, taxonomy_data, beams):
    result = evaluate(taxonomy_run, taxonomy_data[0], beams=beams)
    s = result["scores"]
    searches = ["greedy"] + ([f"beam {beams}"] if beams > 1 else [])
    names = ["majority path"] + [f"{d} {search}" for search in searches
                                 for d in ("unconstrained", "snapped", "constrained")]
    assert sorted(s) == sorted(names) and all(name in result["text"] for name in names)
    assert all(s[f"constrained {search}"]["hierarchy_breaks"] == 0 for search in searches)
    assert s["snapped greedy"]["hierarchy_breaks"] == 0
    # Constrained greedy loses nothing: it equals greedy wherever greedy's output is valid.
    assert s["constrained greedy"]["item_accuracy"] >= s["unconstrained greedy"]["item_accuracy"]


def test_scores_by_hand(decoder):
    taxonomy = decoder.taxonomy
    a, b = taxonomy.paths[0], taxonomy.paths[1]
    broken = (a[0], a[1], a[2], "No Such Brand")
    result = scores([a, broken, None], [a, a, b], taxonomy)
    assert result["item_accuracy"] == pytest.approx(1 / 3)
    assert result["hierarchy_breaks"] == pytest.approx(2 / 3)
    assert result["brand"] == pytest.approx((1 + (b[3] == "No Such Brand")) / 3)


@pytest.fixture(scope="module")
def loaded(exported):
    import tensorflow_text  # noqa: F401 -- the SentencePiece op

    return tf.saved_model.load(exported)


# 8 is the tiny recipe's export batch: 11 runs in 2 chunks, the last padded.
@pytest.mark.parametrize("batch", [1, pytest.param(3, marks=pytest.mark.slow), pytest.param(8, marks=pytest.mark.slow),
                                   11])
def test_export_round_trip(loaded, decoder, taxonomy_data, batch):
    rows = read_split(taxonomy_data[0], "test")[:batch]
    inputs = {kind.DESCRIPTION: tf.constant([r[kind.DESCRIPTION] for r in rows]),
              kind.RETAILER: tf.constant([r[kind.RETAILER] for r in rows]),
              kind.PRICE: tf.constant([f"{r[kind.PRICE]:.2f}" for r in rows])}
    out = loaded.signatures["serving_default"](**inputs)
    served = list(zip(*[[v.decode() for v in out[level].numpy()] for level in kind.LABELS]))
    beams = 2  # the tiny recipe's export.beams
    assert served == decoder.predict(rows, "constrained", beams=beams)
    score = out["score"].numpy()
    assert score.shape == (batch,) and ((score > 0) & (score <= 1)).all()
    text = loaded.signatures["unconstrained"](**inputs)["text"].numpy()
    ids = decoder.generate(decoder.encode(rows), constrained=False, beams=beams)
    assert [t.decode() for t in text] == decoder.texts(ids)


def test_warmup_requests_replay(exported, loaded):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported, "assets.extra", "tf_serving_warmup_requests")
    signatures = []
    for record in tf.data.TFRecordDataset(path):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert out
        signatures.append(request.model_spec.signature_name)
    assert sorted(signatures) == ["serving_default", "unconstrained"]


def test_predict_writes_valid_deterministic_lines_and_votes(exported, taxonomy_data, tmp_path):
    data, raw = taxonomy_data
    taxonomy = read_taxonomy(os.path.join(data, TAXONOMY))
    first, second = str(tmp_path / "a.predict"), str(tmp_path / "b.predict")
    counts = predict([exported], data, first)
    predict([exported], data, second)
    with open(first, "rb") as f, open(second, "rb") as g:
        assert f.read() == g.read()
    lines = [json.loads(line) for line in open(first, encoding="utf-8")]
    test_ids = {json.loads(line)[kind.ID] for line in open(raw["test_features"], encoding="utf-8")}
    assert [line[kind.ID] for line in lines] == sorted(test_ids) and counts["lines"] == len(test_ids)
    assert list(lines[0]) == [kind.ID, *kind.LABELS]
    assert counts["hierarchy_breaks"] == 0


@pytest.mark.slow
def test_predict_votes_and_snaps(exported, taxonomy_data, tmp_path):
    data, _ = taxonomy_data
    taxonomy = read_taxonomy(os.path.join(data, TAXONOMY))
    first = str(tmp_path / "a.predict")
    predict([exported], data, first)
    single = read_labels(first)
    # The vote of a model with itself is the model: every output is already a valid path.
    voted = str(tmp_path / "vote.predict")
    counts = predict([exported, exported], data, voted)
    assert counts["models"] == 2 and read_labels(voted) == single
    snapped = str(tmp_path / "snapped.predict")
    predict([exported], data, snapped, decoding="snapped")
    assert all(taxonomy.is_valid(p) for p in read_labels(snapped).values())


@pytest.mark.slow
def test_beam_job_writes_the_predict_submission(exported, taxonomy_data, tmp_path):
    written = assert_beam_job_matches_predict(["--model", exported, "--model", exported, "--data", taxonomy_data[0]],
                                              tmp_path)
    with open(taxonomy_data[1]["test_features"], encoding="utf-8") as f:
        assert len(written.decode("utf-8").splitlines()) == len(f.read().splitlines())
