"""The YouTube-8M evaluation: Hit@1, PERR, GAP and MAP (video level), MAP@K (segment level).

These reproduce the definitions of the starter code (github.com/google/youtube-8m:
`eval_util.py`, `average_precision_calculator.py`, `mean_average_precision_calculator.py`,
`segment_eval_inference.py`) and of the 3rd challenge's Kaggle metric (2019, MAP@100,000),
written from the formulas, in vectorised NumPy.

Definitions (labels are 0/1; as in the starter code, a label > 0 is a positive):

- **Hit@1** (`calculate_hit_at_one`): the fraction of videos whose highest-scored class is
  one of their labels.
- **PERR** (`calculate_precision_at_equal_recall_rate`): per video with L labels, the
  fraction of its L highest-scored classes that are labels *and* have a score > 0 (the
  starter code's `predictions > 0` test: with logits, a negative score never counts);
  averaged over all videos, a video without labels counting 0.
- **GAP** (`calculate_gap`): keep each video's `top_k` (20) highest-scored classes, pool
  those (score, is-label) pairs of all videos into one list ranked by score, and take its
  average precision with the number of positives set to *all* labels of all videos
  (`sum(num_positives)`), not only those that made a top 20:
  `AP = sum over ranks i holding a label of (labels in ranks 1..i) / i, divided by P`.
- **MAP** (`EvaluationMetrics`): the same top-`top_k` pairs, split by class; each class's
  AP over its own list, normalised by all of that class's labels; the mean over the
  classes that have at least one label (`MeanAveragePrecisionCalculator`'s
  `filter_empty_classes=True`, then `numpy.mean` in `utils.AddEpochSummary`). Note the
  TF Model Garden port (`official/projects/yt8m`) instead divides by all classes:
  `mean_ap(..., skip_empty_classes=False)` gives that number.
- **Segment MAP@K** (Kaggle 2019; `segment_eval_inference.py`): for each class, the
  submitted segments best-first, cut at K; segments that were not rated for that class are
  removed from the list (only human-rated segments are scored); then
  `AP_c = sum over ranks i holding a positive of (positives in ranks 1..i) / i, / N_c`,
  N_c = the number of positive segments of class c (not min(N_c, K): with more positives
  than K a class cannot reach 1). MAP@K is the mean of AP_c over the classes with at least
  one positive; a class absent from the submission scores 0.

Ties (the one place where "the starter code's number" is not a well-defined number):

- *Selecting* a fixed number of classes from one video (Hit@1's `argmax`, PERR's top L,
  GAP/MAP's top k) resolves tied scores toward the lower class index. That is `np.argmax`'s
  documented rule, so Hit@1 is exactly the starter code's; the starter code's
  `np.argpartition` picks among ties in an unspecified order that differs between NumPy
  versions and CPUs, so no exact reproduction exists and we fix the same rule as argmax.
- *Ranking* a list for an AP (GAP, MAP) averages over every order of tied scores. The
  starter code shuffles with `random.seed(0)` before a stable sort "to avoid
  overestimating the ap"; that draws one order of each tied group, and the order it draws
  depends on heap and argpartition layouts. Its expectation over tie orders (computed
  exactly, see `average_precision`) is the number the shuffle is sampling, is
  deterministic, and does not depend on how the inputs were ordered or batched. Without
  ties every definition here equals the starter code's exactly.
- The segment metric scores a ranked submission (the starter code replaces scores by
  ranks), so there is no tie to average: `segment_map_at_k` ranks scores best-first with
  ties broken by the smaller key, the same order `segment_topk.SegmentTopK` writes, so the
  metric of the scores equals the metric of the written file.
"""

import numpy as np

DEFAULT_TOP_K = 20  # eval.py's --top_k: predictions per video kept for GAP and MAP.
SEGMENT_K = 100_000  # The 2019 challenge's K: segments per class in a submission.


def _check_pair(predictions, labels):
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape != labels.shape:
        raise ValueError(
            "predictions and labels must be matrices of the same shape [videos, classes], "
            f"got {predictions.shape} and {labels.shape}."
        )
    if predictions.dtype.kind not in "fiu":
        raise ValueError(f"predictions must be numbers, got dtype {predictions.dtype}.")
    if predictions.dtype.kind == "f" and np.isnan(predictions).any():
        raise ValueError("predictions contain NaN; a NaN cannot be ranked.")
    return predictions, labels > 0


def _check_top_k(top_k):
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    return int(top_k)


def _top_mask(predictions, counts):
    """Per row, marks the `counts[row]` highest scores; ties go to the lower class index.

    np.partition finds each row's count-th largest value t; everything above t is in, and
    the tied values equal to t are taken left to right (cumsum) until the row is full.
    Rows are grouped by count (PERR's label counts take few distinct values), so this is
    O(classes) per row, never a full sort.
    """
    num_rows, num_classes = predictions.shape
    counts = np.minimum(np.broadcast_to(np.asarray(counts, dtype=np.int64), (num_rows,)),
                        num_classes)
    mask = np.zeros((num_rows, num_classes), dtype=bool)
    for count in np.unique(counts):
        if count <= 0:
            continue
        rows = np.flatnonzero(counts == count)
        block = predictions[rows]
        kth = np.partition(block, num_classes - count, axis=1)[:, num_classes - count]
        kth = kth[:, None]
        above = block > kth
        tied = block == kth
        room = count - above.sum(axis=1, keepdims=True)
        mask[rows] = above | (tied & (np.cumsum(tied, axis=1) <= room))
    return mask


def top_k_classes(predictions, top_k):
    """Each row's top_k classes, best first; tied scores by the lower class index.

    Args:
        predictions: [rows, classes] scores (no NaN).
        top_k: classes per row (capped at the number of classes).

    Returns:
        (classes, scores): int64 and predictions' dtype, both [rows, min(top_k, classes)].

    Example:

    ```python
    top_k_classes(np.array([[0.1, 0.7, 0.7, 0.2]]), 2)  # ([[1, 2]], [[0.7, 0.7]])
    ```
    """
    predictions = np.asarray(predictions)
    top_k = min(_check_top_k(top_k), predictions.shape[1])
    rows, classes = np.nonzero(_top_mask(predictions, top_k))
    # np.nonzero lists each row's classes in increasing order, so a stable sort on the
    # negated scores keeps tied classes in index order.
    classes = classes.reshape(len(predictions), top_k)
    scores = predictions[rows, classes.ravel()].reshape(len(predictions), top_k)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(classes, order, axis=1), np.take_along_axis(scores, order, axis=1)


def _hits_at_one(predictions, positive):
    top = np.argmax(predictions, axis=1)  # First maximum: the starter code's np.argmax.
    return positive[np.arange(len(top)), top]


def _perr_per_video(predictions, positive):
    num_labels = positive.sum(axis=1)
    chosen = _top_mask(predictions, num_labels)
    # The starter code only counts a label whose score is > 0.
    correct = (chosen & positive & (predictions > 0)).sum(axis=1)
    return np.divide(correct, num_labels, out=np.zeros(len(num_labels)),
                     where=num_labels > 0)


def _top_k_entries(predictions, positive, top_k):
    """The starter code's `top_k_by_class` as flat arrays: (class, score, is_label)."""
    rows, classes = np.nonzero(_top_mask(predictions, top_k))
    return classes, predictions[rows, classes], positive[rows, classes]


def _grouped_average_precision(groups, scores, labels, num_positives, n=None):
    """The starter code's `ap_at_n` for many lists at once, averaged over tie orders.

    Args:
        groups: int array [m], which list (class) each entry belongs to, in
            `range(len(num_positives))`.
        scores, labels: arrays [m]: the entry's score and whether it is a positive.
        num_positives: array [num_groups], the positives each list is normalised by.
        n: None, or the cutoff of AP@n: only ranks 1..n count and the normaliser becomes
            min(num_positives, n), as in `ap_at_n`.

    Returns:
        float64 array [num_groups], 0 where a list has no entry or no positive.

    Expected AP under a uniformly random order of each tied group (McSherry & Najork,
    ECIR 2008): for the rank r = b + j (j = 1..m) inside a tied run of m entries holding t
    positives, after b entries holding p positives, the run puts a positive there with
    probability t/m, and given that, the expected positives in ranks 1..r are
    p + 1 + (j - 1)(t - 1)/(m - 1). The term for rank r is the product over r. With no ties
    (m = 1) it is the plain `is_label * positives_so_far / r`.
    """
    num_positives = np.asarray(num_positives, dtype=np.float64)
    num_groups = len(num_positives)
    result = np.zeros(num_groups)
    if len(scores) == 0:
        return result
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    groups = np.asarray(groups, dtype=np.int64)
    order = np.lexsort((-scores, groups))
    groups, scores, labels = groups[order], scores[order], labels[order]
    size = len(scores)
    index = np.arange(size)

    group_start = np.ones(size, dtype=bool)
    group_start[1:] = groups[1:] != groups[:-1]
    run_start = group_start.copy()
    run_start[1:] |= scores[1:] != scores[:-1]
    group_first = np.maximum.accumulate(np.where(group_start, index, 0))
    run_first = np.maximum.accumulate(np.where(run_start, index, 0))
    run_id = np.cumsum(run_start) - 1
    run_length = np.bincount(run_id)[run_id]
    run_positives = np.bincount(run_id, weights=labels)[run_id]

    positives_before = np.cumsum(labels) - labels  # Positives strictly before each entry.
    rank = index - group_first + 1  # 1-based rank inside the entry's list.
    before_run = run_first - group_first  # b: entries of the list before the tied run.
    p = positives_before[run_first] - positives_before[group_first]
    j = rank - before_run
    m = run_length.astype(np.float64)
    t = run_positives
    share = np.divide((j - 1) * (t - 1), m - 1, out=np.zeros(size), where=m > 1)
    terms = (t / m) * (p + 1 + share) / rank
    if n is not None:
        terms = np.where(rank <= n, terms, 0.0)
    sums = np.bincount(groups, weights=terms, minlength=num_groups)
    normaliser = num_positives if n is None else np.minimum(num_positives, n)
    np.divide(sums, normaliser, out=result, where=normaliser > 0)
    return result


def average_precision(scores, labels, num_positives=None, n=None):
    """Non-interpolated average precision of one ranked list (the starter code's `ap_at_n`).

    Args:
        scores: array [m] of scores, higher ranks first.
        labels: array [m], > 0 for a positive.
        num_positives: the positives to normalise by, when the list does not hold them all
            (GAP passes all labels, including those outside every top k). Default: the
            positives in `labels`.
        n: None, or AP@n: only the first n ranks count and the normaliser is
            min(num_positives, n).

    Returns:
        The AP as a float, averaged over the orders of tied scores; 0.0 for an empty list
        or no positives.

    Example:

    ```python
    average_precision([0.9, 0.8, 0.7], [1, 0, 1])  # (1/1 + 2/3) / 2 = 0.8333
    average_precision([0.5, 0.5], [1, 0])          # (1 + 1/2) / 2 = 0.75
    ```
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel() > 0
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}.")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; a NaN cannot be ranked.")
    if n is not None:
        n = _check_top_k(n)
    total = labels.sum() if num_positives is None else num_positives
    if total < 0:
        raise ValueError(f"num_positives must be >= 0, got {num_positives}.")
    groups = np.zeros(len(scores), dtype=np.int64)
    return float(_grouped_average_precision(groups, scores, labels, [total], n)[0])


def hit_at_one(predictions, labels):
    """Fraction of videos whose top-scored class is a label (`calculate_hit_at_one`).

    Args:
        predictions: [videos, classes] scores.
        labels: [videos, classes], > 0 for a label.
    """
    predictions, positive = _check_pair(predictions, labels)
    if len(predictions) == 0:
        raise ValueError("hit_at_one needs at least one video.")
    return float(_hits_at_one(predictions, positive).mean())


def perr(predictions, labels):
    """Precision at equal recall rate (`calculate_precision_at_equal_recall_rate`).

    Per video with L labels: how many of its L top-scored classes are labels with a score
    > 0, over L (0 for a video without labels); averaged over videos.

    Args:
        predictions: [videos, classes] scores.
        labels: [videos, classes], > 0 for a label.
    """
    predictions, positive = _check_pair(predictions, labels)
    if len(predictions) == 0:
        raise ValueError("perr needs at least one video.")
    return float(_perr_per_video(predictions, positive).mean())


def gap(predictions, labels, top_k=DEFAULT_TOP_K):
    """Global average precision over each video's top_k predictions (`calculate_gap`).

    Args:
        predictions: [videos, classes] scores.
        labels: [videos, classes], > 0 for a label.
        top_k: predictions kept per video (20 in both video-level challenges).
    """
    predictions, positive = _check_pair(predictions, labels)
    top_k = _check_top_k(top_k)
    _, scores, is_label = _top_k_entries(predictions, positive, top_k)
    return average_precision(scores, is_label, num_positives=int(positive.sum()))


def class_average_precisions(predictions, labels, top_k=DEFAULT_TOP_K):
    """Each class's AP over the videos' top_k predictions, as `EvaluationMetrics` does.

    Returns:
        (aps, num_positives): float64 [classes] and int64 [classes]. A class's AP is 0 when
        it has no label or none of its labels' videos ranked it in their top_k.
    """
    predictions, positive = _check_pair(predictions, labels)
    top_k = _check_top_k(top_k)
    classes, scores, is_label = _top_k_entries(predictions, positive, top_k)
    num_positives = positive.sum(axis=0)
    return _grouped_average_precision(classes, scores, is_label, num_positives), num_positives


def _mean_over_classes(aps, num_positives, skip_empty_classes):
    if skip_empty_classes:
        aps = aps[num_positives > 0]
    if len(aps) == 0:
        raise ValueError("No class has a positive label: MAP is undefined.")
    return float(aps.mean())


def mean_ap(predictions, labels, top_k=DEFAULT_TOP_K, skip_empty_classes=True):
    """Mean of the per-class APs (`EvaluationMetrics.get()['aps']`, then `numpy.mean`).

    Args:
        predictions: [videos, classes] scores.
        labels: [videos, classes], > 0 for a label.
        top_k: predictions kept per video before the per-class lists are formed (the
            starter code computes MAP from the same top 20 as GAP).
        skip_empty_classes: average over the classes with at least one label (the starter
            code's `filter_empty_classes=True`); False averages over all classes, an empty
            class counting 0 (TF Model Garden's `sum(aps) / num_class`).
    """
    aps, num_positives = class_average_precisions(predictions, labels, top_k)
    return _mean_over_classes(aps, num_positives, skip_empty_classes)


class VideoMetrics:
    """Streaming Hit@1, PERR, GAP and MAP over batches, equal to the batch functions.

    Keeps running sums for Hit@1 and PERR, the label count of each class, and each video's
    top_k (class, score, is_label) triples, as the starter code's `EvaluationMetrics` keeps
    its heaps: memory is O(videos * top_k), never O(videos * classes). A triple costs
    2 or 4 bytes (class) + the score's bytes + 1 byte.

    Args:
        num_classes: columns of every batch.
        top_k: predictions kept per video for GAP and MAP (20 in the challenges).
        skip_empty_classes: see `mean_ap`.

    Example:

    ```python
    metrics = VideoMetrics(num_classes=3862)
    for predictions, labels in batches:      # [batch, 3862] each
        metrics.update(predictions, labels)
    metrics.result()  # {"hit_at_one": ..., "perr": ..., "gap": ..., "map": ...}
    ```
    """

    def __init__(self, num_classes, top_k=DEFAULT_TOP_K, skip_empty_classes=True):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        self.num_classes = int(num_classes)
        self.top_k = _check_top_k(top_k)
        self.skip_empty_classes = skip_empty_classes
        self._class_dtype = np.int16 if self.num_classes <= np.iinfo(np.int16).max else np.int32
        self.reset()

    def reset(self):
        """Forgets every batch."""
        self.num_videos = 0
        self._hits = 0
        self._perr_sum = 0.0
        self._num_positives = np.zeros(self.num_classes, dtype=np.int64)
        self._chunks = []  # (classes, scores, is_label) per update.

    def update(self, predictions, labels):
        """Adds a batch: predictions and labels [batch, num_classes]."""
        predictions, positive = _check_pair(predictions, labels)
        if predictions.shape[1] != self.num_classes:
            raise ValueError(
                f"Expected {self.num_classes} classes, got a batch of shape {predictions.shape}."
            )
        if len(predictions) == 0:
            return
        self.num_videos += len(predictions)
        self._hits += int(_hits_at_one(predictions, positive).sum())
        self._perr_sum += float(_perr_per_video(predictions, positive).sum())
        self._num_positives += positive.sum(axis=0)
        classes, scores, is_label = _top_k_entries(predictions, positive, self.top_k)
        self._chunks.append((classes.astype(self._class_dtype), scores, is_label))

    def result(self):
        """The metrics over every batch so far.

        Returns:
            dict with float `hit_at_one`, `perr`, `gap`, `map`.

        Raises:
            ValueError: before any video, or (for `map`) when no class has a label.
        """
        if self.num_videos == 0:
            raise ValueError("VideoMetrics.result() before any video was added.")
        classes = np.concatenate([chunk[0] for chunk in self._chunks])
        scores = np.concatenate([chunk[1] for chunk in self._chunks])
        is_label = np.concatenate([chunk[2] for chunk in self._chunks])
        # Merge what was merged so the next result() does not concatenate again.
        self._chunks = [(classes, scores, is_label)]
        gap_value = _grouped_average_precision(
            np.zeros(len(scores), dtype=np.int64), scores, is_label,
            [self._num_positives.sum()])[0]
        aps = _grouped_average_precision(classes, scores, is_label, self._num_positives)
        return {
            "hit_at_one": self._hits / self.num_videos,
            "perr": self._perr_sum / self.num_videos,
            "gap": float(gap_value),
            "map": _mean_over_classes(aps, self._num_positives, self.skip_empty_classes),
        }


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def ranked_segment_map_at_k(ranked_by_class, positives, k=SEGMENT_K, negatives=None):
    """Kaggle 2019 MAP@K of a submission that is already ranked (see the module docstring).

    Args:
        ranked_by_class: dict class -> sequence of segment keys, best first (a parsed
            `Class,Segments` file, or `{c: topk.result(c)[0]}` from a `SegmentTopK`).
        positives: dict class -> set of segment keys rated as containing the class.
        k: the cut: only the first k segments of each class count.
        negatives: optional dict class -> set of segment keys rated as *not* containing the
            class. When given, segments rated neither way for a class are removed from its
            list (after the cut at k, as `segment_eval_inference.py` cuts then filters)
            before scoring, as the Kaggle metric does; when None, every segment not in
            `positives` counts as a negative.

    Returns:
        MAP@K over the classes with at least one positive.

    Example:

    ```python
    ranked_segment_map_at_k({7: ["a:5", "b:0", "c:10"]}, {7: {"a:5", "c:10"}})
    # class 7: (1/1 + 2/3) / 2 = 0.8333
    ```
    """
    k = _check_k(k)
    classes = [c for c, keys in positives.items() if len(keys) > 0]
    if not classes:
        raise ValueError("No class has a positive segment: MAP@K is undefined.")
    total = 0.0
    for label in classes:
        ranked = list(ranked_by_class.get(label, ()))[:k]
        if len(set(ranked)) != len(ranked):
            raise ValueError(f"Class {label!r} lists a segment more than once.")
        class_positives = positives[label]
        if negatives is not None:
            rated = class_positives | set(negatives.get(label, ()))
            ranked = [key for key in ranked if key in rated]
        hits = np.fromiter((key in class_positives for key in ranked), dtype=bool,
                           count=len(ranked))
        ranks = np.flatnonzero(hits) + 1
        total += float(np.sum(np.arange(1, len(ranks) + 1) / ranks)) / len(class_positives)
    return total / len(classes)


def rank_segments(pairs):
    """Keys of (key, score) pairs best-first; tied scores by the smaller key.

    The same order as `SegmentTopK.result` and the submission it writes.
    """
    pairs = list(pairs)
    if not pairs:
        return []
    keys = np.asarray([key for key, _ in pairs])
    scores = np.asarray([score for _, score in pairs], dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("segment scores contain NaN; a NaN cannot be ranked.")
    return keys[np.lexsort((keys, -scores))].tolist()


def segment_map_at_k(scores_by_class, positives, k=SEGMENT_K, negatives=None):
    """Kaggle 2019 segment MAP@K from scores: rank best-first, cut at k, score.

    Args:
        scores_by_class: dict class -> list of (segment_key, score).
        positives: dict class -> set of segment keys rated positive for the class.
        k: segments per class that count (100,000 in the challenge).
        negatives: optional dict class -> set of keys rated negative; see
            `ranked_segment_map_at_k` (unrated segments are then dropped).

    Returns:
        The mean over classes with a positive of
        `sum over ranks i <= k holding a positive of (positives in 1..i) / i, / N_c`.

    Example:

    ```python
    segment_map_at_k({3: [("v1:0", 0.2), ("v2:5", 0.9)]}, {3: {"v1:0"}})  # 1/2 = 0.5
    ```
    """
    ranked = {label: rank_segments(pairs) for label, pairs in scores_by_class.items()}
    return ranked_segment_map_at_k(ranked, positives, k=k, negatives=negatives)


__all__ = [
    "DEFAULT_TOP_K",
    "SEGMENT_K",
    "VideoMetrics",
    "average_precision",
    "class_average_precisions",
    "gap",
    "hit_at_one",
    "mean_ap",
    "perr",
    "rank_segments",
    "ranked_segment_map_at_k",
    "segment_map_at_k",
    "top_k_classes",
]
