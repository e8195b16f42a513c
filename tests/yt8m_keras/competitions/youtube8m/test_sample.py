import csv
import glob
import hashlib

import numpy as np
import pytest
import tensorflow as tf

from yt8m_keras.competitions.youtube8m import sample as yt8m

# The official layout, spelled out here rather than imported, so the sample is checked
# against the format itself and not against our own reader.
CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.VarLenFeature(tf.int64),
    "segment_labels": tf.io.VarLenFeature(tf.int64),
    "segment_start_times": tf.io.VarLenFeature(tf.int64),
    "segment_scores": tf.io.VarLenFeature(tf.float32),
}
SEQUENCE = {"rgb": tf.io.FixedLenSequenceFeature([], tf.string), "audio": tf.io.FixedLenSequenceFeature([], tf.string)}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The default sample (300 videos, 20 classes, 10 rated), as users get it."""
    return yt8m.write_sample(str(tmp_path_factory.mktemp("yt8m_raw")))


def _parse_with_tf(serialized):
    context, sequence = tf.io.parse_single_sequence_example(serialized, CONTEXT, SEQUENCE)
    video = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in context.items()}
    for key, width in (("rgb", 1024), ("audio", 128)):
        video[key] = tf.reshape(tf.io.decode_raw(sequence[key], tf.uint8), [-1, width])
    return video


def _parsed_split(pattern):
    return list(tf.data.TFRecordDataset(sorted(glob.glob(pattern))).map(_parse_with_tf).as_numpy_iterator())


def _videos(pattern):
    """Every video of the shards matching `pattern`, read with protobuf alone (fast), dequantized."""
    videos = []
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.SequenceExample.FromString(record.numpy())
            context, lists = example.context.feature, example.feature_lists.feature_list
            frames = [np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in lists[key].feature])
                      for key in ("rgb", "audio")]
            features = np.concatenate(frames, axis=1).astype(np.float32) * (4 / 255) + 4 / 512 - 2
            videos.append({
                "id": context["id"].bytes_list.value[0].decode(),
                "labels": list(context["labels"].int64_list.value),
                "ratings": list(zip(context["segment_labels"].int64_list.value,
                                    context["segment_start_times"].int64_list.value,
                                    context["segment_scores"].float_list.value)),
                "features": features,
            })
    return videos


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _auc(scores, positive):
    scores, positive = np.asarray(scores), np.asarray(positive, bool)
    return float((scores[positive][:, None] > scores[~positive][None, :]).mean())


def test_sample_is_the_official_frame_level_format(sample):
    assert [p.rsplit("/", 1)[1] for p in sorted(glob.glob(sample["train"]))] == [
        f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    segment_classes = {int(r["Index"]) for r in _rows(sample["segment_vocabulary"])}
    assert len(segment_classes) == 10 and segment_classes <= set(range(20))
    seen_ids = set()
    counts = {}
    for split in ("train", "validate", "test"):
        videos = _parsed_split(sample[split])
        counts[split] = len(videos)
        for video in videos:
            frames = len(video["rgb"])
            assert 30 <= frames <= 90 and video["audio"].shape == (frames, 128)
            assert len(video["id"]) == 4 and video["id"] not in seen_ids
            seen_ids.add(video["id"])
            starts, scores = video["segment_start_times"], video["segment_scores"]
            if split == "test":
                assert len(video["labels"]) == 0 and len(video["segment_labels"]) == 0
                continue
            assert len(video["labels"]) in (1, 2, 3) and set(video["labels"]) <= set(range(20))
            if split == "train":
                assert len(video["segment_labels"]) == 0
                continue
            assert set(video["labels"]) & segment_classes
            assert len(video["segment_labels"]) == len(starts) == len(scores) > 0
            assert set(video["segment_labels"]) <= set(video["labels"]) & segment_classes
            assert all(s % 5 == 0 and s + 5 <= frames for s in starts)
            assert set(scores.tolist()) <= {0.0, 1.0}
    assert counts == {"train": 180, "validate": 60, "test": 60}

    vocabulary = _rows(sample["vocabulary"])
    assert list(vocabulary[0]) == ["Index", "TrainVideoCount", "KnowledgeGraphId", "Name", "WikiUrl",
                                   "Vertical1", "Vertical2", "Vertical3", "WikiDescription"]
    assert [int(r["Index"]) for r in vocabulary] == list(range(20))
    assert all(int(r["TrainVideoCount"]) > 0 and r["Name"] for r in vocabulary)
    truth = _rows(sample["test_segments_truth"])
    assert {int(r["Class"]) for r in truth} == segment_classes
    test_ids = {v["id"] for v in _videos(sample["test"])}
    for row in truth:
        for segment in row["Segments"].split():
            video_id, start = segment.split(":")
            assert video_id in test_ids and int(start) % 5 == 0


def test_same_seed_same_bytes(tmp_path):
    def digests(directory, seed):
        paths = yt8m.write_sample(str(tmp_path / directory), videos=12, classes=5, segment_classes=2, seed=seed)
        files = sorted(glob.glob(str(tmp_path / directory / "*")))
        assert paths["vocabulary"] in files
        return [(f.rsplit("/", 1)[1], hashlib.sha256(open(f, "rb").read()).hexdigest()) for f in files]

    assert digests("a", 3) == digests("b", 3) != digests("c", 4)


def test_a_linear_baseline_learns_videos_and_segments_far_above_chance(sample):
    """Nearest class centroid of mean features, fitted on train only; scored on validate and test."""
    train, validate, test = (_videos(sample[s]) for s in ("train", "validate", "test"))
    classes = 20
    means = np.stack([v["features"].mean(axis=0) for v in train])
    center = means.mean(axis=0)
    targets = np.zeros([len(train), classes])
    for i, video in enumerate(train):
        targets[i, video["labels"]] = 1
    centroids = targets.T @ (means - center) / targets.sum(axis=0)[:, None]

    # Video level: is the top-scored class one of the video's labels?
    scores = (np.stack([v["features"].mean(axis=0) for v in validate]) - center) @ centroids.T
    hit_at_1 = np.mean([int(np.argmax(s)) in v["labels"] for s, v in zip(scores, validate)])
    chance = np.mean([len(v["labels"]) / classes for v in validate])
    assert chance < 0.15 and hit_at_1 > 0.75

    # Segment level: the rated segments, scored from their own 5 frames against the label's centroid.
    def segment_score(video, label, start):
        return float((video["features"][start:start + 5].mean(axis=0) - center) @ centroids[label])

    ratings = [(segment_score(v, label, start), score) for v in validate for label, start, score in v["ratings"]]
    positive = [score == 1.0 for _, score in ratings]
    assert 0.2 < np.mean(positive) < 0.8  # both kinds are rated
    assert _auc([s for s, _ in ratings], positive) > 0.85

    # The hidden test truth agrees with the test frames: positives score above the other segments.
    truth = {(int(r["Class"]), segment) for r in _rows(sample["test_segments_truth"])
             for segment in r["Segments"].split()}
    segment_classes = sorted({c for c, _ in truth})
    pairs = [(segment_score(v, c, start), (c, f"{v['id']}:{start}") in truth)
             for v in test for start in range(0, len(v["features"]) // 5 * 5, 5) for c in segment_classes]
    assert _auc([s for s, _ in pairs], [p for _, p in pairs]) > 0.85
