"""Bounded-memory top-K segments per class, and the Kaggle submission writers.

The 3rd YouTube-8M challenge (2019) asks, for each of 1,000 classes, for the 100,000 test
segments most likely to show it. The 7th place kept every score (1.7M segments x 1,000
classes in an int16 memmap, 3.4 GB per model) and sorted each class at the end.
`SegmentTopK` streams instead: per class it keeps only the best K (score, key) pairs seen
so far, so its memory does not grow with the number of segments.

Representation (the leanest exact one we found): per class a float32 score and an int32
index into a table of the segment keys. The K kept pairs are the submission itself, so
C * K * 8 bytes (800 MB for C = 1,000, K = 100,000) is irreducible for an exact result.
Each class row has B = ceil(K * merge_slack) spare slots: new candidates are appended
there, and when a row is full it is cut back to its best K with one `np.argpartition`
(O(K + B)), so each candidate costs O((K + B) / B) amortised instead of a heap operation.
A score below the class's current K-th best cannot enter and is rejected with one vector
comparison, which is what keeps the stream fast: after the first K segments most scores
are rejected.

Memory formula (bytes):

    C * (K + B) * 8                      the score and index rows (float32 + int32)
    + table_capacity * key_bytes         the key table
    + S * 5 + candidates * 32            per-step temporaries: a class-major copy and a
                                         mask of S = 2^22 scores, int64 positions of the
                                         scores that qualify (<= S, ~150 MB at worst)

with B = ceil(K * merge_slack) (default 0.25 -> 1.0 GB for C = 1,000, K = 100,000), and
key_bytes = 8 for integer keys or the longest key's UTF-8 length for string keys. The
table holds every key seen until it reaches `max(4M, 2 * keys still referenced)` entries,
then drops the keys no class references any more; it is therefore bounded by the number of
distinct segments that are in some class's top K, never by the number of segments seen.

Order and ties: everything here ranks by score, higher first, and among equal scores by
the smaller key (integer order, or the UTF-8 byte order of string keys, which is the same
as code point order). The rule depends only on the (key, score) pairs, not on how they
were batched or ordered, so the same inputs always give the same result and the same
bytes on disk. Scores are compared as float32 (wider input is cast first).
"""

import csv
import math
import os
from collections.abc import Mapping

import numpy as np

from yt8m_keras.competitions.youtube8m.metrics import top_k_classes
from yt8m_keras.inference import atomic_file

DEFAULT_K = 100_000  # The 2019 challenge: 100,000 segments per class.
DEFAULT_MERGE_SLACK = 0.25
_MIN_KEY_TABLE = 1 << 22  # Key-table entries below which unused keys are never purged.
_CHUNK_SCORES = 1 << 22  # Scores examined per internal step (bounds the temporaries).
_INDEX_LIMIT = np.iinfo(np.int32).max


def _transpose(block):
    """block.T as a C-contiguous copy, tile by tile.

    A plain `.T` copy of a [rows, 1000] float32 block reads one column at a time, a new
    page every element; 512 x 64 tiles keep the working set in cache (about 8x faster).
    """
    num_rows, num_cols = block.shape
    out = np.empty((num_cols, num_rows), dtype=block.dtype)
    for r in range(0, num_rows, 512):
        for c in range(0, num_cols, 64):
            out[c:c + 64, r:r + 512] = block[r:r + 512, c:c + 64].T
    return out


class SegmentTopK:
    """Keeps, for every class, the K best-scored segments of a stream of segment batches.

    Args:
        num_classes: columns of every score batch.
        k: segments kept per class (100,000 in the 2019 challenge).
        merge_slack: spare slots per class as a fraction of k (see the module docstring):
            more slack merges less often and uses more memory.

    Example:

    ```python
    topk = SegmentTopK(num_classes=1000, k=100_000)
    for keys, scores in batches:  # keys: [n] "vid:start" strings or int ids; scores [n, 1000]
        topk.update(keys, scores)
    keys, scores = topk.result(0)  # class index 0, best first
    write_segment_submission("submission.csv", topk, class_ids)
    ```
    """

    def __init__(self, num_classes, k=DEFAULT_K, merge_slack=DEFAULT_MERGE_SLACK):
        for name, value in (("num_classes", num_classes), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not (isinstance(merge_slack, (int, float)) and 0 < merge_slack <= 16):
            raise ValueError(f"merge_slack must be a number in (0, 16], got {merge_slack!r}.")
        self.num_classes = int(num_classes)
        self.k = int(k)
        self.slack = max(1, math.ceil(self.k * merge_slack))
        self._width = self.k + self.slack
        # np.empty: pages are only touched (and resident) once written, so a short stream
        # costs little even with a large k.
        self._scores = np.empty((self.num_classes, self._width), dtype=np.float32)
        self._index = np.empty((self.num_classes, self._width), dtype=np.int32)
        self._fill = np.zeros(self.num_classes, dtype=np.int64)
        # A score below this cannot enter the class's top k. It stays -inf until the row
        # is first cut back to k entries (until then every score is a candidate).
        self._floor = np.full(self.num_classes, -np.inf, dtype=np.float32)
        self._key_kind = None  # "int" or "str", fixed by the first update.
        self._keys = None  # The key table; entries [0, _num_keys) are in use.
        self._num_keys = 0
        self._purge_at = _MIN_KEY_TABLE
        self._unique_checked = True
        self.segments_seen = 0

    # ------------------------------------------------------------------ public API

    @property
    def stored_entries(self):
        """(score, key) pairs held now, over all classes: never above num_classes * (k + slack)."""
        return int(self._fill.sum())

    @property
    def nbytes(self):
        """Bytes held by the score rows, the index rows and the key table."""
        table = 0 if self._keys is None else self._keys.nbytes
        return self._scores.nbytes + self._index.nbytes + table

    def update(self, segment_keys, scores):
        """Offers a batch of segments to every class.

        Args:
            segment_keys: [n] unique segment keys: strings (e.g. "vid:start_second") or
                integers, the same kind in every batch. A key must not repeat across the
                stream: `result()` refuses one that did while both copies are still in the
                key table (a copy purged from it is in no top k, so cannot reach the output).
            scores: [n, num_classes] scores (cast to float32); NaN is refused.
        """
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise ValueError(
                f"scores must be [n, {self.num_classes}], got shape {scores.shape}."
            )
        if scores.dtype != np.float32:
            if scores.dtype.kind not in "fiu":
                raise ValueError(f"scores must be numbers, got dtype {scores.dtype}.")
            scores = scores.astype(np.float32)
        num_rows = len(scores)
        if num_rows == 0:
            if len(segment_keys) != 0:
                raise ValueError(f"{len(segment_keys)} segment keys for 0 score rows.")
            return
        keys = self._encode_keys(segment_keys, num_rows)
        if np.isnan(scores).any():
            raise ValueError("scores contain NaN; a NaN cannot be ranked.")
        base = self._append_keys(keys)
        rows_per_chunk = max(1, _CHUNK_SCORES // self.num_classes)
        for start in range(0, num_rows, rows_per_chunk):
            chunk = scores[start:start + rows_per_chunk]
            self._absorb(chunk, base + start)
        self.segments_seen += num_rows
        self._unique_checked = False
        if self._num_keys >= self._purge_at:
            self._purge_keys()

    def result(self, class_index):
        """The class's best min(k, segments seen) segments, best first.

        Args:
            class_index: 0 .. num_classes - 1 (a column of the score batches).

        Returns:
            (keys, scores): keys as an array of str (string keys) or int64, scores float32;
            sorted by score descending, ties by the smaller key.
        """
        raw_keys, scores = self._sorted(class_index)
        if self._key_kind == "str":
            return np.char.decode(raw_keys, "utf-8"), scores
        return raw_keys, scores

    def merge(self, other):
        """Adds the pairs another `SegmentTopK` kept (another worker's segments, say).

        The result is what one stream of both inputs would give: the union of two top-Ks
        holds the top K of the union, and ties are broken by key alone. Returns self.
        """
        if (other.num_classes, other.k) != (self.num_classes, self.k):
            raise ValueError(f"cannot merge a top-{other.k} of {other.num_classes} classes into a top-{self.k} "
                             f"of {self.num_classes}.")
        if other._keys is None:
            return self
        if self._key_kind is None:
            self._key_kind = other._key_kind
        elif other._key_kind != self._key_kind:
            raise ValueError(f"cannot merge {other._key_kind} segment keys into {self._key_kind} ones.")
        base = self._append_keys(other._keys[:other._num_keys])
        for row in np.flatnonzero(other._fill):
            fill = int(other._fill[row])
            self._merge_into(row, other._scores[row, :fill], other._index[row, :fill] + np.int32(base))
        self.segments_seen += other.segments_seen
        self._unique_checked = False
        if self._num_keys >= self._purge_at:
            self._purge_keys()
        return self

    def __getstate__(self):
        # What Beam ships between workers: only the pairs held and the keys they use, not the
        # (mostly untouched) num_classes x (k + slack) rows.
        if self._keys is not None:
            self._purge_keys()
        state = {key: value for key, value in self.__dict__.items() if key not in ("_scores", "_index", "_keys")}
        state["_keys"] = None if self._keys is None else self._keys[:self._num_keys].copy()
        held = [slice(0, int(fill)) for fill in self._fill]
        state["_held"] = (np.concatenate([self._scores[row, s] for row, s in enumerate(held)]),
                          np.concatenate([self._index[row, s] for row, s in enumerate(held)]))
        return state

    def __setstate__(self, state):
        state = dict(state)
        scores, index = state.pop("_held")
        self.__dict__.update(state)
        self._scores = np.empty((self.num_classes, self._width), dtype=np.float32)
        self._index = np.empty((self.num_classes, self._width), dtype=np.int32)
        starts = np.cumsum(self._fill) - self._fill
        for row, (start, fill) in enumerate(zip(starts.tolist(), self._fill.tolist())):
            self._scores[row, :fill] = scores[start:start + fill]
            self._index[row, :fill] = index[start:start + fill]

    # ------------------------------------------------------------------ keys

    def _encode_keys(self, segment_keys, num_rows):
        keys = np.asarray(segment_keys)
        if keys.ndim != 1 or len(keys) != num_rows:
            raise ValueError(
                f"segment_keys must be a 1-D sequence of {num_rows} keys (one per score row), "
                f"got shape {keys.shape}."
            )
        if keys.dtype.kind in "iu":
            kind = "int"
            if keys.dtype.kind == "u" and len(keys) and keys.max() > np.iinfo(np.int64).max:
                raise ValueError("Integer segment keys must fit in int64.")
            keys = keys.astype(np.int64)
        elif keys.dtype.kind in "USO":
            kind = "str"
            if keys.dtype.kind == "O":
                if not all(isinstance(key, str) for key in keys):
                    raise ValueError("segment_keys must all be str, or all be integers.")
                keys = keys.astype(str)
            if keys.dtype.kind == "U":
                # UTF-8 bytes sort in code point order, and take a quarter of 'U' storage.
                keys = np.char.encode(keys, "utf-8")
            if (np.char.str_len(keys) == 0).any():
                raise ValueError("segment keys must not be empty strings.")
        else:
            raise ValueError(f"segment_keys must be str or integers, got dtype {keys.dtype}.")
        if self._key_kind is None:
            self._key_kind = kind
        elif kind != self._key_kind:
            raise ValueError(
                f"segment_keys changed kind: earlier batches had {self._key_kind} keys, "
                f"this one has {kind} keys."
            )
        return keys

    def _append_keys(self, keys):
        if self._num_keys + len(keys) > _INDEX_LIMIT:
            self._purge_keys()
            if self._num_keys + len(keys) > _INDEX_LIMIT:
                raise OverflowError("More than 2**31 - 1 referenced segment keys.")
        needed = self._num_keys + len(keys)
        if self._keys is None:
            self._keys = np.empty(max(needed, 1024), dtype=keys.dtype)
        else:
            dtype = np.promote_types(self._keys.dtype, keys.dtype)  # wider strings
            if needed > len(self._keys) or dtype != self._keys.dtype:
                capacity = max(needed, 2 * len(self._keys)) if needed > len(self._keys) \
                    else len(self._keys)
                grown = np.empty(capacity, dtype=dtype)
                grown[:self._num_keys] = self._keys[:self._num_keys]
                self._keys = grown
        base = self._num_keys
        self._keys[base:needed] = keys
        self._num_keys = needed
        return base

    def _purge_keys(self):
        """Drops keys no class references; renumbers the index rows."""
        used = np.zeros(self._num_keys, dtype=bool)
        for row in range(self.num_classes):
            used[self._index[row, :self._fill[row]]] = True
        new_number = (np.cumsum(used) - 1).astype(np.int32)
        kept = int(used.sum())
        self._keys[:kept] = self._keys[:self._num_keys][used]
        self._num_keys = kept
        for row in range(self.num_classes):
            fill = self._fill[row]
            self._index[row, :fill] = new_number[self._index[row, :fill]]
        # Purge again once the table doubles: amortised O(1) per key.
        self._purge_at = max(_MIN_KEY_TABLE, 2 * kept)

    def _key_values(self, indices):
        return self._keys[indices]

    def _check_unique_keys(self):
        """Refuses a key given twice (both copies still in the table)."""
        if self._unique_checked:
            return
        keys = np.sort(self._keys[:self._num_keys])
        repeated = np.flatnonzero(keys[1:] == keys[:-1])
        if len(repeated):
            raise ValueError(
                f"Segment key {keys[repeated[0]]!r} was given more than once: segment keys "
                "must be unique across updates."
            )
        self._unique_checked = True

    # ------------------------------------------------------------------ merging

    def _absorb(self, scores, base):
        # Class-major from here on: a class's candidates come out of np.flatnonzero
        # already grouped and in row order, and every row write below is contiguous.
        columns = _transpose(scores)
        num_rows = columns.shape[1]
        fill = int(self._fill[0])
        if fill < self._width and (self._floor == -np.inf).all() and (self._fill == fill).all():
            # Filling phase: every class has taken every segment so far, so a block goes
            # in as columns without a mask until the rows are full; then all are cut.
            take = min(num_rows, self._width - fill)
            self._scores[:, fill:fill + take] = columns[:, :take]
            self._index[:, fill:fill + take] = np.arange(base, base + take, dtype=np.int32)
            self._fill += take
            if fill + take == self._width:
                for row in range(self.num_classes):
                    self._cut(row)
            if take == num_rows:
                return
            columns = np.ascontiguousarray(columns[:, take:])
            base, num_rows = base + take, num_rows - take

        candidates = columns >= self._floor[:, None]
        counts = np.count_nonzero(candidates, axis=1)
        for row in np.flatnonzero(self._fill + counts > self._width):
            self._cut(row)
            # The floor just rose: fewer of this batch's scores still qualify.
            np.greater_equal(columns[row], self._floor[row], out=candidates[row])
            counts[row] = np.count_nonzero(candidates[row])
            if self._fill[row] + counts[row] > self._width:
                # More qualifying scores in one batch than spare slots: merge directly.
                rows = np.flatnonzero(candidates[row])
                self._merge_into(row, columns[row, rows], (base + rows).astype(np.int32))
                candidates[row] = False
                counts[row] = 0

        flat = np.flatnonzero(candidates)
        if len(flat) == 0:
            return
        classes, rows = np.divmod(flat, num_rows)
        # Slot of the i-th candidate: its class's row start + fill + rank within the class
        # (candidates are grouped by class, so rank = i - first candidate of the class).
        first = np.cumsum(counts) - counts
        offset = np.arange(self.num_classes) * self._width + self._fill - first
        slots = offset[classes] + np.arange(len(flat))
        self._scores.reshape(-1)[slots] = columns.reshape(-1)[flat]
        self._index.reshape(-1)[slots] = base + rows
        self._fill += counts

    def _best_positions(self, scores, indices, keep):
        """Positions of the `keep` best (score desc, key asc) among scores/indices."""
        size = len(scores)
        if size <= keep:
            return np.arange(size)
        cut = size - keep
        part = np.argpartition(scores, cut)
        threshold = scores[part[cut]]
        best = part[cut:]
        tied_in = np.count_nonzero(scores[best] == threshold)
        tied_all = np.count_nonzero(scores == threshold)
        if tied_in == tied_all:
            return best  # No tie straddles the cut: the partition is already exact.
        # Some segments tied at the threshold are in and some out: keep the smaller keys.
        above = np.flatnonzero(scores > threshold)
        tied = np.flatnonzero(scores == threshold)
        by_key = np.argsort(self._key_values(indices[tied]), kind="stable")
        return np.concatenate([above, tied[by_key[:tied_in]]])

    def _set_row(self, row, scores, indices):
        count = len(scores)
        self._scores[row, :count] = scores
        self._index[row, :count] = indices
        self._fill[row] = count
        if count >= self.k:
            self._floor[row] = scores.min()

    def _cut(self, row):
        """Cuts a row back to its best k entries and raises its floor."""
        fill = int(self._fill[row])
        if fill <= self.k:
            return
        scores = self._scores[row, :fill]
        indices = self._index[row, :fill]
        best = self._best_positions(scores, indices, self.k)
        self._set_row(row, scores[best], indices[best])

    def _merge_into(self, row, new_scores, new_indices):
        fill = int(self._fill[row])
        scores = np.concatenate([self._scores[row, :fill], new_scores])
        indices = np.concatenate([self._index[row, :fill], new_indices])
        best = self._best_positions(scores, indices, self.k)
        self._set_row(row, scores[best], indices[best])

    # ------------------------------------------------------------------ results

    def _sorted(self, class_index):
        if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
                or not 0 <= class_index < self.num_classes:
            raise IndexError(
                f"class_index must be in [0, {self.num_classes}), got {class_index!r}.")
        if self._keys is None:  # Nothing seen yet.
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        self._check_unique_keys()
        self._cut(class_index)
        fill = int(self._fill[class_index])
        scores = self._scores[class_index, :fill]
        keys = self._key_values(self._index[class_index, :fill])
        # An unstable sort is 6x faster than a stable one; its order among equal scores is
        # arbitrary, so only the tied runs are re-sorted by key. (100,000 float32 scores
        # usually hold a few hundred ties: float32 has ~2^24 values in [0.5, 1).)
        order = np.argsort(-scores)
        ordered = scores[order]
        equal_next = ordered[1:] == ordered[:-1]
        if equal_next.any():
            tied = np.zeros(fill, dtype=bool)
            tied[1:] |= equal_next
            tied[:-1] |= equal_next
            positions = np.flatnonzero(tied)
            starts_run = np.ones(len(positions), dtype=bool)
            starts_run[1:] = ~equal_next[positions[1:] - 1]
            run = np.cumsum(starts_run)
            members = order[positions]
            order[positions] = members[np.lexsort((keys[members], run))]
        return keys[order], ordered


def average_models(predictions, weights=None):
    """Weighted mean of several models' scores for the same segments (or videos).

    Args:
        predictions: list of arrays [n, C], one per model, rows in the same order.
        weights: None (equal weights) or one non-negative weight per model; normalised to
            sum to 1.

    Returns:
        float32 [n, C]. Accumulated in float64 in list order, so the result is the same
        bit for bit on every run.

    Example:

    ```python
    average_models([nextvlad_scores, dbof_scores], weights=[0.6, 0.4])
    ```
    """
    predictions = [np.asarray(p) for p in predictions]
    if not predictions:
        raise ValueError("average_models needs at least one array.")
    shape = predictions[0].shape
    if len(shape) != 2 or any(p.shape != shape for p in predictions):
        raise ValueError(
            "Every model's scores must be [n, C] of one shape, got "
            f"{[p.shape for p in predictions]}."
        )
    if weights is None:
        weights = np.ones(len(predictions))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(predictions),) or not np.isfinite(weights).all() \
            or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(
            f"weights must be {len(predictions)} finite non-negative numbers with a positive "
            f"sum, got {weights.tolist()}."
        )
    weights = weights / weights.sum()
    total = np.zeros(shape, dtype=np.float64)
    for weight, p in zip(weights, predictions):
        total += weight * p
    return total.astype(np.float32)


def _text_table(key_to_text, key_kind):
    """A list/array key_to_text as a UTF-8 bytes array indexed by integer keys, once."""
    if not isinstance(key_to_text, (list, tuple, np.ndarray)):
        return key_to_text
    if key_kind != "int":
        raise ValueError("A list or array key_to_text needs integer segment keys to index it.")
    table = np.asarray(key_to_text)
    if table.dtype.kind == "O":
        table = table.astype(str)
    if table.dtype.kind == "U":
        table = np.char.encode(table, "utf-8")
    if table.ndim != 1 or table.dtype.kind != "S":
        raise ValueError("A list or array key_to_text must be a 1-D sequence of strings.")
    return table


def _texts_for(raw_keys, key_kind, key_to_text):
    """Submission texts (bytes) for a class's keys."""
    if key_to_text is None:
        if key_kind == "str":
            return raw_keys.tolist()
        return [str(key).encode() for key in raw_keys.tolist()]
    if isinstance(key_to_text, np.ndarray):
        return key_to_text[raw_keys].tolist()
    keys = np.char.decode(raw_keys, "utf-8").tolist() if key_kind == "str" else raw_keys.tolist()
    if isinstance(key_to_text, Mapping):
        return [_as_bytes(key_to_text[key]) for key in keys]
    if callable(key_to_text):
        return [_as_bytes(key_to_text(key)) for key in keys]
    raise ValueError("key_to_text must be None, a callable, a mapping, a list or an array.")


def _as_bytes(text):
    if isinstance(text, bytes):
        return text
    if isinstance(text, np.bytes_):
        return bytes(text)
    return str(text).encode("utf-8")


def _segments_field(texts, label):
    """The space-joined texts, refusing any text that would corrupt the CSV row.

    Checked on the joined bytes (C speed, 10^8 texts in a full submission): exactly
    len - 1 spaces and no comma, quote or line break, and no empty text.
    """
    field = b" ".join(texts)
    if texts and (field.count(b" ") != len(texts) - 1 or min(map(len, texts)) == 0
                  or any(ch in field for ch in (b",", b"\n", b"\r", b'"'))):
        forbidden = (b" ", b",", b"\n", b"\r", b'"')
        bad = next(t for t in texts if not t or any(ch in t for ch in forbidden))
        raise ValueError(
            f"Segment text {bad!r} (class {label}) is empty or holds a space, comma, quote "
            "or line break: it would corrupt the Class,Segments file."
        )
    return field


def write_segment_submission(path, topk, class_ids, key_to_text=None):
    """Writes the 2019 challenge's `Class,Segments` CSV from a `SegmentTopK`.

    One row per class index, in class index order: the original label id, then the class's
    segments best-first, space-separated, as "vid:start_second". Written to a temporary
    name and renamed when complete; the same top-K always gives the same bytes.

    Args:
        path: the CSV to write.
        topk: a `SegmentTopK` fed every test segment.
        class_ids: [num_classes] original label ids, class_ids[i] for score column i.
        key_to_text: how a key becomes its "vid:start_second" text: None when string keys
            already are that text (integer keys are written as numbers), or a callable, a
            mapping, or a list/array indexed by integer keys.

    Returns:
        path.

    Example:

    ```python
    write_segment_submission("segments.csv", topk, class_ids=vocabulary_ids,
                             key_to_text=segment_texts)  # segment_texts[i]: "Xf8q:120"
    ```
    """
    class_ids = list(class_ids)
    if len(class_ids) != topk.num_classes:
        raise ValueError(f"class_ids has {len(class_ids)} ids for {topk.num_classes} classes.")
    if len(set(map(str, class_ids))) != len(class_ids):
        raise ValueError("class_ids must be unique.")
    key_to_text = _text_table(key_to_text, topk._key_kind)
    # atomic_file writes through tf.io.gfile: the Beam job's worker may write to gs://.
    with atomic_file(path, "wb") as out:
        out.write(b"Class,Segments\n")
        for index, label in enumerate(class_ids):
            raw_keys, _ = topk._sorted(index)
            texts = _texts_for(raw_keys, topk._key_kind, key_to_text)
            out.write(str(label).encode() + b"," + _segments_field(texts, label) + b"\n")
    return path


def read_segment_submission(path):
    """Parses a `Class,Segments` CSV: dict int class id -> list of segment texts, best first."""
    ranked = {}
    with open(path, newline="", encoding="utf-8") as source:
        reader = csv.reader(source)
        header = next(reader, None)
        if header != ["Class", "Segments"]:
            raise ValueError(f"{path}: expected the header Class,Segments, got {header!r}.")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise ValueError(f"{path}:{line}: expected 2 fields, got {len(row)}.")
            label = int(row[0])
            if label in ranked:
                raise ValueError(f"{path}:{line}: class {label} appears twice.")
            ranked[label] = row[1].split(" ") if row[1] else []
    return ranked


def video_lines(video_ids, predictions, class_ids, top_k):
    """The submission lines (`id,label score label score ...`) of videos [n] with predictions [n, num_classes].

    Pairs best first (ties: the lower class index first), scores with 6 decimals; class_ids
    are the label ids as strings, top_k at most their number.
    """
    predictions = np.asarray(predictions)
    video_ids = [str(video_id) for video_id in video_ids]
    if predictions.ndim != 2 or predictions.shape != (len(video_ids), len(class_ids)):
        raise ValueError(
            f"predictions must be [{len(video_ids)}, {len(class_ids)}], "
            f"got {predictions.shape}."
        )
    if predictions.dtype.kind == "f" and np.isnan(predictions).any():
        raise ValueError("predictions contain NaN.")
    for video_id in video_ids:
        if not video_id or any(ch in video_id for ch in ', \n\r"'):
            raise ValueError(f"Video id {video_id!r} is empty or would corrupt the CSV.")
    if not video_ids:
        return []
    top, top_scores = top_k_classes(predictions, top_k)
    lines = []
    for video_id, classes, scores in zip(video_ids, top.tolist(), top_scores.tolist()):
        pairs = " ".join(f"{class_ids[c]} {s:.6f}" for c, s in zip(classes, scores))
        lines.append(f"{video_id},{pairs}\n")
    return lines


class VideoSubmissionWriter:
    """Streams the 2nd challenge's `VideoId,LabelConfidencePairs` CSV, batch by batch.

    Each row: the video id, then its top_k classes as "label score" pairs, best first
    (ties: the lower class index first), scores with 6 decimals. Rows are written in the
    order added, to `path + ".tmp"`, renamed to `path` by `close()`; leaving a `with`
    block on an exception removes the temporary file instead. Same inputs, same bytes.

    Args:
        path: the CSV to write.
        class_ids: [num_classes] original label ids, class_ids[i] for prediction column i.
        top_k: label/score pairs per video (20 in the challenge).

    Example:

    ```python
    with VideoSubmissionWriter("videos.csv", class_ids) as writer:
        for video_ids, predictions in batches:  # [n] str, [n, 3862]
            writer.add(video_ids, predictions)
    ```
    """

    def __init__(self, path, class_ids, top_k=20):
        self.class_ids = [str(label) for label in class_ids]
        if not self.class_ids:
            raise ValueError("class_ids is empty.")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k <= 0:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
        self.top_k = min(int(top_k), len(self.class_ids))
        self.path = path
        self._temporary = f"{path}.tmp"
        self._out = open(self._temporary, "w", encoding="utf-8", newline="")
        self._out.write("VideoId,LabelConfidencePairs\n")
        self.videos_written = 0

    def add(self, video_ids, predictions):
        """Writes one row per video: video_ids [n], predictions [n, num_classes]."""
        if self._out is None:
            raise ValueError("VideoSubmissionWriter.add() after close().")
        lines = video_lines(video_ids, predictions, self.class_ids, self.top_k)
        if not lines:
            return
        self._out.write("".join(lines))
        self.videos_written += len(lines)

    def close(self):
        """Finishes the file and renames it to `path`."""
        if self._out is None:
            return
        self._out.close()
        self._out = None
        os.replace(self._temporary, self.path)

    def abort(self):
        """Closes and removes the temporary file; `path` is left untouched."""
        if self._out is not None:
            self._out.close()
            self._out = None
        if os.path.exists(self._temporary):
            os.remove(self._temporary)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_video_submission(path, video_ids, predictions, class_ids, top_k=20):
    """Writes a whole `VideoId,LabelConfidencePairs` CSV at once (see `VideoSubmissionWriter`).

    Example:

    ```python
    write_video_submission("videos.csv", ["a1b2", "c3d4"], predictions, class_ids)
    # a1b2,17 0.912345 3 0.500000 ...
    ```
    """
    with VideoSubmissionWriter(path, class_ids, top_k=top_k) as writer:
        writer.add(video_ids, predictions)
    return path


def read_video_submission(path):
    """Parses a `VideoId,LabelConfidencePairs` CSV: list of (video_id, [(label, score)])."""
    rows = []
    with open(path, newline="", encoding="utf-8") as source:
        reader = csv.reader(source)
        header = next(reader, None)
        if header != ["VideoId", "LabelConfidencePairs"]:
            raise ValueError(f"{path}: expected VideoId,LabelConfidencePairs, got {header!r}.")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise ValueError(f"{path}:{line}: expected 2 fields, got {len(row)}.")
            fields = row[1].split(" ")
            if len(fields) % 2:
                raise ValueError(f"{path}:{line}: odd number of label/score fields.")
            pairs = [(int(fields[i]), float(fields[i + 1])) for i in range(0, len(fields), 2)]
            rows.append((row[0], pairs))
    return rows


__all__ = [
    "DEFAULT_K",
    "SegmentTopK",
    "VideoSubmissionWriter",
    "average_models",
    "read_segment_submission",
    "read_video_submission",
    "write_segment_submission",
    "write_video_submission",
]
