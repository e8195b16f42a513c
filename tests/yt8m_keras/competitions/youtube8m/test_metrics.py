"""YouTube-8M metrics against numbers worked out by hand from the starter code's definitions."""

import itertools

import numpy as np
import pytest

from yt8m_keras.competitions.youtube8m.metrics import (
    VideoMetrics,
    average_precision,
    class_average_precisions,
    gap,
    hit_at_one,
    mean_ap,
    perr,
    rank_segments,
    ranked_segment_map_at_k,
    segment_map_at_k,
    top_k_classes,
)

# Three videos, five classes; class 4 has no label anywhere. Used with top_k=2.
# Per video, the top 2 (score, is_label):
#   V1 labels {0, 1, 3}: (0.9, yes) class 0, (0.6, no) class 2   -> 3 labels, only 2 kept
#   V2 labels {1, 2}:    (0.8, yes) class 1, (0.7, no) class 3
#   V3 labels {2}:       (0.5, no) class 0,  (0.35, no) class 3
PREDICTIONS = np.array([
    [0.9, 0.1, 0.6, 0.3, 0.0],
    [0.2, 0.8, 0.4, 0.7, 0.0],
    [0.5, 0.05, 0.15, 0.35, 0.0],
])
LABELS = np.array([
    [1, 1, 0, 1, 0],
    [0, 1, 1, 0, 0],
    [0, 0, 1, 0, 0],
])


def test_hit_at_one_counts_the_first_maximum():
    predictions = np.array([[0.1, 0.9, 0.3], [0.8, 0.1, 0.7], [0.5, 0.5, 0.1]])
    labels = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 0]])
    # Hit, miss, and a tie between classes 0 and 1 that np.argmax gives to class 0: miss.
    assert hit_at_one(predictions, labels) == pytest.approx(1 / 3)


def test_perr_by_hand():
    predictions = np.array([
        [0.9, 0.8, 0.1, 0.3],     # 2 labels {0, 3}; top 2 = {0, 1}: 1 right -> 1/2
        [-0.5, -0.2, 0.1, -0.9],  # 2 labels {0, 1}; top 2 = {2, 1}: class 1 is a label but
                                  # its score -0.2 is not > 0, so it does not count -> 0
        [0.3, 0.2, 0.1, 0.0],     # no label -> 0, and it still counts as a video
        [0.4, 0.4, 0.4, 0.1],     # 1 label {0}; three-way tie, the lower index wins -> 1
    ])
    labels = np.array([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert perr(predictions, labels) == pytest.approx((0.5 + 0 + 0 + 1) / 4)


def test_gap_pools_the_top_k_and_counts_every_label():
    # Pooled and ranked: 0.9 yes, 0.8 yes, 0.7, 0.6, 0.5, 0.35; six labels in total
    # (V1's class 1 and 3 and V3's class 2 never made a top 2 but still count).
    assert gap(PREDICTIONS, LABELS, top_k=2) == pytest.approx((1 / 1 + 2 / 2) / 6)


def test_gap_with_top_k_above_the_classes_uses_every_score():
    # Ranked: .9+ .8+ .7 .6 .5 .4+ .35 .3+ .2 .15+ .1+ .05 then three 0.0 (no labels).
    expected = (1 / 1 + 2 / 2 + 3 / 6 + 4 / 8 + 5 / 10 + 6 / 11) / 6
    assert gap(PREDICTIONS, LABELS, top_k=50) == pytest.approx(expected)


def test_mean_ap_per_class_over_the_top_k_skips_empty_classes():
    # Class lists from the top 2s: class 0: 0.9 yes, 0.5 no (1 label)   -> 1
    #   class 1: 0.8 yes (2 labels: V1's never ranked)                   -> 1/2
    #   class 2: 0.6 no (2 labels)                                       -> 0
    #   class 3: 0.7 no, 0.35 no (1 label)                               -> 0
    #   class 4: no label: skipped by the starter code's filter
    aps, positives = class_average_precisions(PREDICTIONS, LABELS, top_k=2)
    np.testing.assert_allclose(aps, [1, 0.5, 0, 0, 0])
    np.testing.assert_array_equal(positives, [1, 2, 2, 1, 0])
    assert mean_ap(PREDICTIONS, LABELS, top_k=2) == pytest.approx(1.5 / 4)
    # TF Model Garden's variant divides by every class.
    assert mean_ap(PREDICTIONS, LABELS, top_k=2, skip_empty_classes=False) == pytest.approx(1.5 / 5)


def test_average_precision_by_hand():
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    # A list that does not hold every positive: normalised by num_positives.
    assert average_precision([0.9, 0.8], [1, 0], num_positives=4) == pytest.approx(1 / 4)
    # AP@n: ranks beyond n do not count, normaliser min(positives, n) = min(3, 2).
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 1], n=2) == pytest.approx(1 / 2)
    assert average_precision([], []) == 0.0
    assert average_precision([0.3, 0.2], [0, 0]) == 0.0


def test_average_precision_averages_over_tie_orders():
    # Two tied, one positive: rank 1 (AP 1) or rank 2 (AP 1/2), equally likely.
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.75)
    # Three tied, two positives at ranks {1,2}: 1; {1,3}: 5/6; {2,3}: (1/2 + 2/3)/2 = 7/12.
    assert average_precision([0.5, 0.5, 0.5], [1, 1, 0]) == pytest.approx(29 / 36)
    # A tie after a negative: the positive is at rank 2 (1/2) or 3 (1/3).
    assert average_precision([0.9, 0.5, 0.5], [0, 1, 0]) == pytest.approx(5 / 12)
    # The order the tied entries are given in does not matter.
    assert average_precision([0.5, 0.5, 0.9], [0, 1, 0]) == pytest.approx(5 / 12)


def _ap_of_order(labels, total, n=None):
    hits, total_precision = 0, 0.0
    for rank, label in enumerate(labels[:n] if n else labels, start=1):
        if label:
            hits += 1
            total_precision += hits / rank
    normaliser = min(total, n) if n else total
    return total_precision / normaliser if normaliser else 0.0


def test_average_precision_equals_the_mean_over_all_permutations_of_ties():
    rng = np.random.default_rng(3)
    for _ in range(60):
        size = int(rng.integers(1, 7))
        scores = rng.integers(0, 3, size).astype(float)
        labels = rng.integers(0, 2, size)
        total = int(labels.sum() + rng.integers(0, 2))
        n = None if rng.random() < 0.5 else int(rng.integers(1, 7))
        values = []
        for permutation in itertools.permutations(range(size)):
            ranked = sorted(permutation, key=lambda i: -scores[i])  # stable: ties permuted
            values.append(_ap_of_order([labels[i] for i in ranked], total, n))
        assert average_precision(scores, labels, total, n) == pytest.approx(np.mean(values))


def test_gap_with_ties_across_videos():
    # Every video's two scores tie at 0.5, and top_k=1 keeps class 0 (the lower index):
    # pooled list = three entries at 0.5 with labels (1, 0, 1); 3 labels in total.
    # Positives at ranks {1,2}: (1 + 1)/3; {1,3}: (1 + 2/3)/3; {2,3}: (1/2 + 2/3)/3.
    predictions = np.full((3, 2), 0.5)
    labels = np.array([[1, 0], [0, 1], [1, 0]])
    expected = ((2 + 5 / 3 + 7 / 6) / 3) / 3
    assert gap(predictions, labels, top_k=1) == pytest.approx(expected)


def test_video_metrics_streaming_equals_the_batch_functions():
    rng = np.random.default_rng(0)
    predictions = np.round(rng.random((257, 40)), 1)  # rounded: many ties
    labels = (rng.random((257, 40)) < 0.08).astype(np.int64)
    labels[5] = 0
    labels[:, 7] = 0
    labels[9, :30] = 1  # more labels than top_k
    metrics = VideoMetrics(num_classes=40, top_k=20)
    start = 0
    for size in [1, 17, 64, 0, 100, 75]:
        metrics.update(predictions[start:start + size], labels[start:start + size])
        start += size
    assert start == 257
    result = metrics.result()
    assert result["hit_at_one"] == pytest.approx(hit_at_one(predictions, labels), rel=1e-12)
    assert result["perr"] == pytest.approx(perr(predictions, labels), rel=1e-12)
    assert result["gap"] == pytest.approx(gap(predictions, labels), rel=1e-12)
    assert result["map"] == pytest.approx(mean_ap(predictions, labels), rel=1e-12)
    assert metrics.num_videos == 257
    assert metrics.result() == result  # result() can be called again


def test_video_metrics_keeps_only_top_k_per_video():
    metrics = VideoMetrics(num_classes=1000, top_k=20)
    rng = np.random.default_rng(1)
    for _ in range(3):
        metrics.update(rng.random((50, 1000), dtype=np.float32), rng.random((50, 1000)) < 0.01)
    assert sum(len(chunk[1]) for chunk in metrics._chunks) == 150 * 20


def test_video_metrics_on_the_hand_example():
    metrics = VideoMetrics(num_classes=5, top_k=2)
    metrics.update(PREDICTIONS[:1], LABELS[:1])
    metrics.update(PREDICTIONS[1:], LABELS[1:])
    result = metrics.result()
    assert result["gap"] == pytest.approx(2 / 6)
    assert result["map"] == pytest.approx(1.5 / 4)
    # Top-1: V1 class 0 (label), V2 class 1 (label), V3 class 0 (not).
    assert result["hit_at_one"] == pytest.approx(2 / 3)


def test_input_errors():
    with pytest.raises(ValueError, match="same shape"):
        gap(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        perr(np.array([[np.nan, 1.0]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="top_k"):
        gap(PREDICTIONS, LABELS, top_k=0)
    with pytest.raises(ValueError, match="at least one video"):
        hit_at_one(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="No class"):
        mean_ap(PREDICTIONS, np.zeros_like(LABELS))
    metrics = VideoMetrics(num_classes=5)
    with pytest.raises(ValueError, match="before any video"):
        metrics.result()
    with pytest.raises(ValueError, match="Expected 5 classes"):
        metrics.update(np.zeros((1, 4)), np.zeros((1, 4)))


def test_top_k_classes_best_first_ties_by_lower_index():
    classes, scores = top_k_classes(np.array([[0.1, 0.7, 0.7, 0.2, 0.7]]), 2)
    np.testing.assert_array_equal(classes, [[1, 2]])
    np.testing.assert_array_equal(scores, [[0.7, 0.7]])
    classes, _ = top_k_classes(np.array([[0.3, 0.1, 0.9]]), 10)  # capped at 3 classes
    np.testing.assert_array_equal(classes, [[2, 0, 1]])


# Segment level (Kaggle 2019). Class 1 has positives {a, c, e}; class 2 {x}; class 3 none.
SEGMENT_SCORES = {
    1: [("a", 0.9), ("b", 0.8), ("c", 0.8), ("d", 0.1), ("e", 0.05)],
    2: [("y", 0.7), ("x", 0.7)],
    3: [("a", 0.4)],
}
SEGMENT_POSITIVES = {1: {"a", "c", "e"}, 2: {"x"}, 3: set()}


def test_segment_map_by_hand():
    # Class 1 ranked a, b, c (b and c tie: the smaller key first), d, e:
    #   positives at ranks 1, 3, 5 -> (1/1 + 2/3 + 3/5) / 3 = 34/45.
    # Class 2: x and y tie, x first -> 1. Class 3 has no positive: not averaged.
    assert rank_segments(SEGMENT_SCORES[1]) == ["a", "b", "c", "d", "e"]
    assert segment_map_at_k(SEGMENT_SCORES, SEGMENT_POSITIVES) == pytest.approx((34 / 45 + 1) / 2)


def test_segment_map_k_below_the_positives_normalises_by_all_positives():
    # k=2: class 1 keeps a, b -> 1/1 over N_c = 3 (not min(3, 2)); class 2 -> 1.
    expected = (1 / 3 + 1) / 2
    assert segment_map_at_k(SEGMENT_SCORES, SEGMENT_POSITIVES, k=2) == pytest.approx(expected)


def test_segment_map_drops_unrated_segments():
    # Rated for class 1: a, c, e (positive) and d (negative); b is unrated and removed:
    # a, c, d, e -> (1 + 2/2 + 3/4) / 3 = 11/12. Class 2: y unrated, removed -> 1.
    negatives = {1: {"d"}}
    assert segment_map_at_k(SEGMENT_SCORES, SEGMENT_POSITIVES, negatives=negatives) == \
        pytest.approx((11 / 12 + 1) / 2)
    # The cut at k comes first, then the unrated are removed: k=2 keeps a, b; b goes -> 1/3.
    assert segment_map_at_k(SEGMENT_SCORES, SEGMENT_POSITIVES, k=2, negatives=negatives) == \
        pytest.approx((1 / 3 + 1) / 2)


def test_segment_map_class_missing_from_the_submission_scores_zero():
    positives = {**SEGMENT_POSITIVES, 4: {"z"}}
    assert segment_map_at_k(SEGMENT_SCORES, positives) == pytest.approx((34 / 45 + 1 + 0) / 3)


def test_ranked_segment_map_errors():
    with pytest.raises(ValueError, match="more than once"):
        ranked_segment_map_at_k({1: ["a", "a"]}, {1: {"a"}})
    with pytest.raises(ValueError, match="No class"):
        ranked_segment_map_at_k({1: ["a"]}, {1: set()})
    with pytest.raises(ValueError, match="k must be"):
        ranked_segment_map_at_k({1: ["a"]}, {1: {"a"}}, k=0)
