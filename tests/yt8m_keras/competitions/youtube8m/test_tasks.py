"""The YouTube-8M recipes end to end on tiny sample data: train, resume, export, evaluate, predict."""

import csv

import numpy as np
import pytest
from preemption import Preempted, preempt_after, weights_file_arrays
import tensorflow as tf

from tfrecords import UserError
from tfrecords import yt8m_frame as kind
from yt8m_keras import train as trainer
from yt8m_keras.competitions.youtube8m import predict as yt8m_predict
from yt8m_keras.cli import main
from yt8m_keras.export import export
from yt8m_keras.recipes import load_recipe
from yt8m_keras.competitions.youtube8m.topk import read_segment_submission, read_video_submission
from batch_predict_check import assert_beam_job_matches_predict


def _records(data_dir, split, n):
    import glob

    paths = sorted(glob.glob(f"{data_dir}/{split}-*.tfrecord"))
    return [r.numpy() for r in tf.data.TFRecordDataset(paths).take(n)]


@pytest.fixture(scope="module")
def segment_run(yt8m_data, yt8m_pretrained, yt8m_tiny, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("yt8m_segment"))
    recipe = load_recipe("yt8m_segment_agnostic:tiny", [*yt8m_tiny, f"model.args.pretrained={yt8m_pretrained}"])
    trainer.train(recipe, yt8m_data[0], model_dir, verbose=0)
    return model_dir


@pytest.fixture(scope="module")
def exported_pair(yt8m_pretrained, segment_run, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("yt8m_export"))
    return export(segment_run, base), export(yt8m_pretrained, base, name="video")


def test_pretraining_resume_is_exact(yt8m_data, yt8m_tiny, tmp_path, monkeypatch):
    # Frames are sampled at random in training: the sampler's seed state must survive too.
    recipe = load_recipe("yt8m_nextvlad:tiny", [*yt8m_tiny, "training.backup_every_steps=2"])
    trainer.train(recipe, yt8m_data[0], str(tmp_path / "whole"), verbose=0)
    preempt_after(monkeypatch, 2)
    with pytest.raises(Preempted):
        trainer.train(recipe, yt8m_data[0], str(tmp_path / "cut"), verbose=0)
    monkeypatch.undo()
    trainer.train(recipe, yt8m_data[0], str(tmp_path / "cut"), verbose=0)
    whole = weights_file_arrays(tmp_path / "whole" / "final.weights.h5")
    cut = weights_file_arrays(tmp_path / "cut" / "final.weights.h5")
    for name in whole:
        np.testing.assert_allclose(cut[name], whole[name], rtol=0, atol=1e-6, err_msg=name)


def test_video_export_serves_official_records_with_the_training_parser(yt8m_data, yt8m_pretrained, exported_pair):
    data_dir, _ = yt8m_data
    recipe, classes, model = trainer.load_trained(yt8m_pretrained)
    records = _records(data_dir, "validate", 3)
    parsed = [kind.parse(tf.constant(r), len(classes), recipe.data.max_frames) for r in records]
    inputs = {key: tf.stack([p[key] for p in parsed]) for key in ("rgb", "audio", "mask")}
    expected = model.predict_on_batch(inputs)
    served = tf.saved_model.load(exported_pair[1]).signatures["serving_default"](tf_example=tf.constant(records))
    np.testing.assert_allclose(served["predictions"].numpy(), expected, atol=1e-5)
    assert served["id"].numpy().tolist() == [p["id"].numpy() for p in parsed]
    top = np.argsort(-expected, axis=1, kind="stable")[:, : served["class_ids"].shape[1]]
    ids = np.array([c["category_id"] for c in classes])  # the original label ids
    np.testing.assert_array_equal(served["class_ids"].numpy(), ids[top])


def _float_frames(frames):
    """uint8 frames (and masks) -> what a client of the `frames`/`segments` signatures has:
    dequantized float32 frames, zero after the last frame (as the pipeline gave them before)."""
    out = {}
    for key, value in frames.items():
        if key.endswith("mask"):
            out[key] = value
        else:
            mask = frames[key.replace("rgb", "mask").replace("audio", "mask")]
            out[key] = kind.dequantize(value) * tf.cast(mask, tf.float32)[..., None]
    return out


def test_frames_signature_takes_dequantized_floats_and_predicts_as_the_records(yt8m_data, yt8m_pretrained,
                                                                               exported_pair):
    data_dir, _ = yt8m_data
    recipe, classes, model = trainer.load_trained(yt8m_pretrained)
    records = _records(data_dir, "validate", 3)
    parsed = [kind.parse(tf.constant(r), len(classes), recipe.data.max_frames) for r in records]
    frames = {key: tf.stack([p[key] for p in parsed]) for key in ("rgb", "audio", "mask")}
    assert frames["rgb"].dtype == tf.uint8
    loaded = tf.saved_model.load(exported_pair[1])
    served = loaded.signatures["frames"](**_float_frames(frames))["predictions"].numpy()
    np.testing.assert_allclose(served, model.predict_on_batch(frames), atol=1e-5)
    by_record = loaded.signatures["serving_default"](tf_example=tf.constant(records))["predictions"].numpy()
    np.testing.assert_allclose(served, by_record, atol=1e-6)
    # The signature's float inputs are unchanged for clients.
    spec = loaded.signatures["frames"].structured_input_signature[1]
    assert {key: s.dtype for key, s in spec.items()} == {"rgb": tf.float32, "audio": tf.float32, "mask": tf.float32}


def test_segments_signature_takes_dequantized_floats_and_predicts_as_the_records(yt8m_data, segment_run,
                                                                                 exported_pair):
    from yt8m_keras.competitions.youtube8m import input as data

    data_dir, _ = yt8m_data
    recipe, classes, _ = trainer.load_trained(segment_run)
    records = _records(data_dir, "test", 2)
    loaded = tf.saved_model.load(exported_pair[0])
    by_record = loaded.signatures["serving_default"](tf_example=tf.constant(records))
    videos = next(iter(data.video_segment_dataset(data_dir, "test", videos_per_batch=2,
                                                  max_frames=recipe.data.max_frames)))
    segments = data.flatten_segments(videos, recipe.data.context_frames)
    assert segments["segment_rgb"].dtype == tf.uint8
    inputs = _float_frames({key: segments[key] for key in ("segment_rgb", "segment_audio", "segment_mask",
                                                             "rgb", "audio", "mask")})
    served = loaded.signatures["segments"](**inputs)["predictions"].numpy()
    np.testing.assert_array_equal(segments["start_time"].numpy(), by_record["start_time"].numpy())
    np.testing.assert_allclose(served, by_record["predictions"].numpy(), atol=1e-6)


def test_segment_export_scores_every_segment(yt8m_data, exported_pair):
    data_dir, _ = yt8m_data
    records = _records(data_dir, "test", 2)
    served = tf.saved_model.load(exported_pair[0]).signatures["serving_default"](tf_example=tf.constant(records))
    frames = [int(kind.parse(tf.constant(r), 1)["num_frames"]) for r in records]
    assert len(served["start_time"]) == sum(n // 5 for n in frames)
    assert set(served["start_time"].numpy() % 5) == {0}
    assert served["predictions"].shape[1] == 4


def test_segment_submission_is_deterministic_and_averages_models(yt8m_data, exported_pair, tmp_path):
    data_dir, raw = yt8m_data
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    count = yt8m_predict.predict_segments(list(exported_pair), data_dir, str(first), k=50, progress=False)
    yt8m_predict.predict_segments(list(exported_pair), data_dir, str(second), k=50, progress=False)
    assert first.read_bytes() == second.read_bytes()
    submission = read_segment_submission(str(first))
    classes = [int(r["Index"]) for r in csv.DictReader(open(raw["segment_vocabulary"]))]
    assert sorted(submission) == sorted(classes)
    assert all(len(segments) == min(50, count) for segments in submission.values())
    vid, start = next(iter(submission.values()))[0].rsplit(":", 1)
    assert vid and int(start) % 5 == 0
    single = tmp_path / "single.csv"
    yt8m_predict.predict_segments([exported_pair[0]], data_dir, str(single), k=50, progress=False)
    assert single.read_bytes() != first.read_bytes()  # the second model changed the ranking


def test_video_submission(yt8m_data, exported_pair, tmp_path):
    out = tmp_path / "videos.csv"
    count = yt8m_predict.predict_videos([exported_pair[1]], yt8m_data[0], str(out), top_k=3)
    rows = read_video_submission(str(out))
    assert len(rows) == count > 0
    with pytest.raises(UserError, match="--task videos needs a video-level model"):
        yt8m_predict.predict_videos([exported_pair[0]], yt8m_data[0], str(tmp_path / "x.csv"))


def test_evaluate_reports_video_metrics_and_segment_map(yt8m_data, yt8m_pretrained, segment_run):
    video = yt8m_predict.evaluate(yt8m_pretrained, yt8m_data[0], k=1000)
    assert set(video["videos"]["model"]) == {"gap", "hit_at_one", "perr", "map"}
    assert "GAP@20" in video["text"] and "segment MAP@1,000" in video["text"]
    segment = yt8m_predict.evaluate(segment_run, yt8m_data[0], k=1000)
    assert "videos" not in segment and 0 <= segment["segments"]["model"] <= 1


def test_segment_recipe_needs_a_pretrained_run(yt8m_data, tmp_path, capsys):
    assert main(["train", "--recipe", "yt8m_segment_agnostic:tiny", "--data", yt8m_data[0],
                 "--model-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: recipe key model.args.pretrained")


def test_cli_predict_segments(yt8m_data, exported_pair, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(["predict", "--model", exported_pair[0], "--model", exported_pair[1], "--data", yt8m_data[0],
                 "--output", str(out), "--k", "10", "--drop-first", "1"]) == 0
    assert "segments scored" in capsys.readouterr().out and out.exists()


@pytest.mark.slow
def test_beam_job_writes_the_predict_submissions(exported_pair, yt8m_data, tmp_path):
    segment, video = exported_pair
    (tmp_path / "segments").mkdir()
    (tmp_path / "videos").mkdir()
    # A small K: every class's top-K is cut on each worker, then merged.
    written = assert_beam_job_matches_predict(
        ["--model", segment, "--model", video, "--data", yt8m_data[0], "--k", "25"], tmp_path / "segments")
    assert written.startswith(b"Class,Segments\n")
    written = assert_beam_job_matches_predict(
        ["--task", "videos", "--model", video, "--data", yt8m_data[0], "--top-k", "5"], tmp_path / "videos")
    assert written.startswith(b"VideoId,LabelConfidencePairs\n")
