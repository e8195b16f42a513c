"""The exported melanoma SavedModel: every signature against the Keras model, warmup requests replayed."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfrecords import melanoma_image as kind
from yt8m_keras.competitions.melanoma.features import codes_from_strings, metadata
from yt8m_keras.export import WARMUP_FILE, export
from batch_predict_check import assert_beam_job_matches_predict
from yt8m_keras.train import load_trained


@pytest.fixture(scope="module")
def exported(melanoma_run, tmp_path_factory):
    return export(melanoma_run[0], str(tmp_path_factory.mktemp("melanoma_export")), name="melanoma")


def _photo(seed, height, width):
    rng = np.random.default_rng(seed)
    return tf.io.encode_jpeg(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).numpy()


def test_serving_default_takes_raw_jpegs_and_metadata_strings(melanoma_run, exported):
    model_dir, recipe, _ = melanoma_run
    _, _, model = load_trained(model_dir)
    size = recipe.data.image_size
    photos = [_photo(0, 60, 90), _photo(1, 80, 40), _photo(2, 32, 32)]  # not square, not the model's size
    sex, age, site = (tf.constant(["male", "female", ""]), tf.constant(["45", "", "70"]),
                      tf.constant(["torso", "posterior torso", "nowhere"]))
    served = tf.saved_model.load(exported).signatures["serving_default"](
        image_bytes=tf.constant(photos), sex=sex, age_approx=age, anatom_site_general_challenge=site)
    # What the signature must equal: the central square resized, and the same metadata vector.
    images = []
    for photo in photos:
        image = tf.io.decode_jpeg(photo, channels=3)
        side = min(image.shape[0], image.shape[1])
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        square = image[top:top + side, left:left + side]
        images.append(tf.cast(tf.round(tf.image.resize(square, [size, size])), tf.uint8))
    codes = codes_from_strings(sex, age, site)
    meta = metadata(*codes, tf.fill([3], tf.constant(kind.MISSING, tf.int64)),
                    tf.constant([len(p) for p in photos]))
    expected = model.predict_on_batch({"image": tf.stack(images), "metadata": meta})
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(served["melanoma"].numpy(), expected[:, kind.MELANOMA], atol=1e-5)
    assert codes[2].numpy().tolist() == [kind.SITES.index("torso"), kind.SITES.index("torso"), kind.MISSING]


def test_tf_example_parses_records_with_the_training_parser(melanoma_run, exported):
    model_dir, recipe, _ = melanoma_run
    _, _, model = load_trained(model_dir)
    size = recipe.data.image_size
    pixels = np.random.default_rng(3).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    records = [kind.encode(tf.io.encode_jpeg(p, quality=100).numpy(), f"ISIC_{i}", sex=i, age_approx=50, site=2,
                           patient_images=3, file_size=120_000) for i, p in enumerate(pixels)]
    served = tf.saved_model.load(exported).signatures["tf_example"](tf_example=tf.constant(records))
    decoded = tf.stack([tf.io.decode_jpeg(kind.parse(tf.constant(r))[kind.IMAGE]) for r in records])
    meta = metadata(tf.constant([0, 1]), tf.constant([50, 50]), tf.constant([2, 2]), tf.constant([3, 3]),
                    tf.constant([120_000, 120_000]))
    expected = model.predict_on_batch({"image": decoded, "metadata": meta})
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    assert [n.decode() for n in served["image_name"].numpy()] == ["ISIC_0", "ISIC_1"]


def test_warmup_requests_replay(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    loaded = tf.saved_model.load(exported)
    signatures = []
    for raw in tf.data.TFRecordDataset(f"{exported}/assets.extra/{WARMUP_FILE}"):
        request = prediction_log_pb2.PredictionLog.FromString(raw.numpy()).predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert outputs["probabilities"].shape[-1] == len(kind.CLASSES)
        signatures.append(request.model_spec.signature_name)
    assert sorted(signatures) == ["pixels", "serving_default", "tf_example"]


@pytest.mark.slow
def test_beam_job_writes_the_predict_submission(exported, deotte_dir, tmp_path):
    # Deotte's layout, the metadata joined from his CSV on every worker; a train shard serves
    # as the test shard (the sample has none; the extra keys of train records are not read).
    data = tmp_path / "deotte"
    shutil.copytree(deotte_dir[0], data)
    first = sorted(data.glob("train*.tfrec"))[0]
    shutil.copy(first, data / first.name.replace("train", "test"))
    written = assert_beam_job_matches_predict(["--model", exported, "--data", str(data)], tmp_path)
    lines = written.decode().splitlines()
    assert lines[0] == "image_name,target" and len(lines) == 1 + int(first.stem.split("-")[1])
