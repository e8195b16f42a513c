"""SegmentTopK against a full sort, its memory bound, and the submission writers."""

import os

import numpy as np
import pytest

from yt8m_keras.competitions.youtube8m import topk as segment_topk
from yt8m_keras.competitions.youtube8m.topk import (
    SegmentTopK,
    VideoSubmissionWriter,
    average_models,
    read_segment_submission,
    read_video_submission,
    write_segment_submission,
    write_video_submission,
)
from yt8m_keras.competitions.youtube8m.metrics import ranked_segment_map_at_k, segment_map_at_k


def brute_force(keys, scores, k):
    """Every class fully sorted: score descending (as float32), then the smaller key."""
    scores = np.asarray(scores, dtype=np.float32)
    result = []
    for c in range(scores.shape[1]):
        order = np.lexsort((keys, -scores[:, c]))[:k]
        result.append((keys[order], scores[order, c]))
    return result


def feed(topk, keys, scores, sizes):
    start = 0
    for size in sizes:
        topk.update(keys[start:start + size], scores[start:start + size])
        start += size
    assert start == len(keys)


def random_sizes(rng, total, largest):
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(0, largest + 1), total - sum(sizes))))
    return sizes


def assert_equal_to_brute_force(topk, keys, scores, k):
    for c, (expected_keys, expected_scores) in enumerate(brute_force(keys, scores, k)):
        got_keys, got_scores = topk.result(c)
        np.testing.assert_array_equal(got_keys, expected_keys)
        np.testing.assert_array_equal(got_scores, expected_scores)


@pytest.mark.parametrize("key_kind", ["int", "str"])
@pytest.mark.parametrize("ties", [False, True])
def test_equals_a_full_sort_over_uneven_batches(key_kind, ties):
    rng = np.random.default_rng(7 + ties)
    for trial in range(25):
        classes = int(rng.integers(1, 6))
        k = int(rng.integers(1, 40))
        segments = int(rng.integers(0, 250))  # often fewer than k, often many more
        if ties:
            scores = rng.integers(0, 4, (segments, classes)).astype(np.float32)
        else:
            scores = rng.random((segments, classes), dtype=np.float32)
        ids = rng.permutation(10 * segments + 1)[:segments]
        keys = np.array([f"v{i:x}:{5 * (i % 30)}" for i in ids]) if key_kind == "str" else ids
        topk = SegmentTopK(classes, k=k, merge_slack=float(rng.choice([0.05, 0.25, 2.0])))
        feed(topk, keys, scores, random_sizes(rng, segments, 60))
        assert_equal_to_brute_force(topk, keys, scores, k)


def test_result_is_independent_of_batching_and_order():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 50, (3000, 8)).astype(np.float32)
    keys = rng.permutation(3000)
    first = SegmentTopK(8, k=300)
    feed(first, keys, scores, [3000])
    shuffled = rng.permutation(3000)
    second = SegmentTopK(8, k=300, merge_slack=0.1)
    feed(second, keys[shuffled], scores[shuffled], random_sizes(rng, 3000, 400))
    for c in range(8):
        for a, b in zip(first.result(c), second.result(c)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("key_kind", ["int", "str"])
def test_merged_workers_equal_one_stream_and_pickle_compactly(key_kind):
    # Beam's batch inference: each worker keeps its own top-K, the accumulators are shipped
    # (pickled) and merged in any order and grouping.
    import pickle

    rng = np.random.default_rng(11)
    scores = rng.integers(0, 30, (2000, 5)).astype(np.float32)  # many ties across workers
    ids = rng.permutation(2000)
    keys = np.array([f"v{i}:{i % 7}" for i in ids]) if key_kind == "str" else ids
    parts = np.split(rng.permutation(2000), [300, 310, 1200])  # uneven, one worker with 10 segments
    workers = []
    for part in parts:
        worker = SegmentTopK(5, k=120, merge_slack=0.5)
        feed(worker, keys[part], scores[part], random_sizes(rng, len(part), 90))
        workers.append(pickle.loads(pickle.dumps(worker)))
    merged = SegmentTopK(5, k=120).merge(workers[2]).merge(workers[0].merge(workers[3])).merge(workers[1])
    assert merged.segments_seen == 2000
    assert_equal_to_brute_force(merged, keys, scores, 120)
    with pytest.raises(ValueError, match="cannot merge a top-7"):
        merged.merge(SegmentTopK(5, k=7))
    # What is shipped is what is held, not the k + slack slots per class.
    large = SegmentTopK(5, k=100_000)
    large.update(keys[:100], scores[:100])
    assert len(pickle.dumps(large)) * 100 < large._scores.nbytes + large._index.nbytes
    assert_equal_to_brute_force(pickle.loads(pickle.dumps(large)), keys[:100], scores[:100], 100_000)


def test_updates_after_a_result_stay_exact():
    rng = np.random.default_rng(2)
    scores = rng.random((900, 4), dtype=np.float32)
    keys = np.arange(900)
    topk = SegmentTopK(4, k=50)
    topk.update(keys[:400], scores[:400])
    topk.result(1)
    topk.update(keys[400:], scores[400:])
    assert_equal_to_brute_force(topk, keys, scores, 50)


def test_memory_does_not_grow_with_the_number_of_segments():
    classes, k = 16, 100
    topk = SegmentTopK(classes, k=k)
    held = topk._scores.nbytes + topk._index.nbytes
    bound = classes * (k + topk.slack)
    rng = np.random.default_rng(3)
    for block in range(200):  # 200 x 256 segments = 512 x k
        keys = np.arange(block * 256, (block + 1) * 256)
        topk.update(keys, rng.random((256, classes), dtype=np.float32))
        assert topk.stored_entries <= bound
    assert topk._scores.nbytes + topk._index.nbytes == held
    assert held == classes * (k + topk.slack) * 8  # float32 score + int32 key index
    topk.result(0)
    assert topk._fill[0] == k


def test_key_table_drops_keys_no_class_holds(monkeypatch):
    monkeypatch.setattr(segment_topk, "_MIN_KEY_TABLE", 64)
    rng = np.random.default_rng(4)
    classes, k = 3, 20
    scores = rng.random((5000, classes), dtype=np.float32)
    keys = np.array([f"s{i}" for i in range(5000)])
    topk = SegmentTopK(classes, k=k)
    for start in range(0, 5000, 50):
        topk.update(keys[start:start + 50], scores[start:start + 50])
        # At most max(64, 2 x referenced) before a purge, plus one batch.
        assert topk._num_keys <= max(64, 2 * classes * (k + topk.slack)) + 50
    assert_equal_to_brute_force(topk, keys, scores, k)


def test_input_errors():
    topk = SegmentTopK(3, k=5)
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        topk.update([1, 2], np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        topk.update([1], np.array([[0.1, np.nan, 0.3]]))
    with pytest.raises(ValueError, match="one per score row"):
        topk.update([1, 2, 3], np.zeros((2, 3)))
    topk.update([1, 2], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="changed kind"):
        topk.update(["a"], np.zeros((1, 3)))
    topk.update([2], np.ones((1, 3)))  # key 2 again
    with pytest.raises(ValueError, match="more than once"):
        topk.result(0)
    with pytest.raises(IndexError):
        topk.result(3)
    with pytest.raises(ValueError, match="k must be"):
        SegmentTopK(3, k=0)


def test_average_models():
    a = np.array([[0.2, 0.4]], dtype=np.float32)
    b = np.array([[0.6, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(average_models([a, b]), [[0.4, 0.2]], rtol=1e-6)
    # Weights 3:1 are normalised: 0.75 a + 0.25 b.
    np.testing.assert_allclose(average_models([a, b], weights=[3, 1]), [[0.3, 0.3]], rtol=1e-6)
    assert average_models([a, b]).dtype == np.float32
    with pytest.raises(ValueError, match="one shape"):
        average_models([a, np.zeros((2, 2))])
    with pytest.raises(ValueError, match="weights"):
        average_models([a, b], weights=[1, -1])


def make_segments(rng, segments=300, classes=4):
    videos = [f"vid{n:03d}" for n in range(segments // 5 + 1)]
    texts = np.array([f"{videos[i // 5]}:{5 * (i % 5)}" for i in range(segments)])
    scores = np.round(rng.random((segments, classes)), 2).astype(np.float32)  # some ties
    return texts, scores


def test_segment_submission_parses_back_and_is_deterministic(tmp_path):
    rng = np.random.default_rng(5)
    texts, scores = make_segments(rng)
    class_ids = [3, 17, 42, 1000]
    one = SegmentTopK(4, k=40)
    feed(one, texts, scores, [300])
    path_one = write_segment_submission(str(tmp_path / "one.csv"), one, class_ids)
    order = rng.permutation(300)
    two = SegmentTopK(4, k=40, merge_slack=0.5)
    feed(two, texts[order], scores[order], [7, 93, 150, 50])
    path_two = write_segment_submission(str(tmp_path / "two.csv"), two, class_ids)
    with open(path_one, "rb") as a, open(path_two, "rb") as b:
        content = a.read()
        assert content == b.read()
    assert content.startswith(b"Class,Segments\n3,")
    assert not os.path.exists(path_one + ".tmp")

    ranked = read_segment_submission(path_one)
    assert list(ranked) == class_ids
    for c, (keys, _) in enumerate(brute_force(texts, scores, 40)):
        assert ranked[class_ids[c]] == keys.tolist()

    # The metric of the written file equals the metric of the scores.
    positives = {class_ids[c]: set(texts[scores[:, c] > 0.7]) for c in range(4)}
    by_class = {class_ids[c]: list(zip(texts, scores[:, c])) for c in range(4)}
    assert ranked_segment_map_at_k(ranked, positives, k=40) == \
        pytest.approx(segment_map_at_k(by_class, positives, k=40))


def test_segment_submission_key_to_text_forms(tmp_path):
    rng = np.random.default_rng(6)
    texts, scores = make_segments(rng, segments=50, classes=2)
    topk = SegmentTopK(2, k=10)
    topk.update(np.arange(50), scores)
    expected = open(write_segment_submission(str(tmp_path / "a.csv"), topk, [1, 2],
                                             key_to_text=texts), "rb").read()
    for key_to_text in (list(texts), dict(enumerate(texts)), lambda key: texts[key]):
        path = write_segment_submission(str(tmp_path / "b.csv"), topk, [1, 2], key_to_text)
        assert open(path, "rb").read() == expected
    first_row = expected.split(b"\n")[1].split(b",")[1].split(b" ")
    assert first_row == [texts[key].encode() for key in topk.result(0)[0]]
    # Integer keys without key_to_text are written as numbers.
    path = write_segment_submission(str(tmp_path / "c.csv"), topk, [1, 2])
    assert read_segment_submission(path)[1] == [str(key) for key in topk.result(0)[0]]


def test_segment_submission_refuses_texts_that_break_the_csv(tmp_path):
    topk = SegmentTopK(1, k=3)
    topk.update(np.arange(3), np.ones((3, 1)))
    path = str(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="corrupt"):
        write_segment_submission(path, topk, [9], key_to_text=["a:0", "b 5", "c:10"])
    assert not os.path.exists(path) and not os.path.exists(path + ".tmp")


def test_video_submission_streams_and_parses_back(tmp_path):
    rng = np.random.default_rng(8)
    predictions = np.round(rng.random((30, 50)), 2).astype(np.float32)  # ties
    predictions[0, :] = 0.5  # all tied: classes 0..19 in index order
    video_ids = [f"v{i:02d}" for i in range(30)]
    class_ids = list(range(100, 150))
    path = str(tmp_path / "videos.csv")
    with VideoSubmissionWriter(path, class_ids) as writer:
        writer.add(video_ids[:7], predictions[:7])
        writer.add(video_ids[7:7], predictions[7:7])
        writer.add(video_ids[7:], predictions[7:])
    assert writer.videos_written == 30
    rows = read_video_submission(path)
    assert [video for video, _ in rows] == video_ids
    assert [label for label, _ in rows[0][1]] == list(range(100, 120))
    for (_, pairs), row in zip(rows, predictions):
        order = np.lexsort((np.arange(50), -row))[:20]
        assert [label for label, _ in pairs] == [class_ids[c] for c in order]
        np.testing.assert_allclose([score for _, score in pairs], row[order], atol=5e-7)
    line = open(path).read().split("\n")[1]
    assert line.startswith("v00,100 0.500000 101 0.500000 ")
    # One call writes the same bytes as the batches did.
    again = write_video_submission(str(tmp_path / "again.csv"), video_ids, predictions, class_ids)
    assert open(again, "rb").read() == open(path, "rb").read()


def test_video_submission_failure_leaves_no_file(tmp_path):
    path = str(tmp_path / "videos.csv")
    with pytest.raises(ValueError, match="predictions must be"):
        with VideoSubmissionWriter(path, [1, 2, 3]) as writer:
            writer.add(["a"], np.zeros((1, 3)))
            writer.add(["b"], np.zeros((1, 4)))
    assert not os.path.exists(path) and not os.path.exists(path + ".tmp")
