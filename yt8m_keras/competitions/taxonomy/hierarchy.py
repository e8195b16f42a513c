"""The valid (supergroup, group, module, brand) paths, and the winners' repairs over them.

`taxonomy.csv` (written by the conversion) lists every path seen in training with its
count. The constrained decoder only ever emits these paths; the two repairs here are what
the IndoML 2024 winners did to unconstrained outputs, kept to compare against it:

- `snap`: each field, top down, replaced by the most similar valid child of the fields
  already fixed (difflib's ratio; ties to the more frequent child);
- `vote`: the hierarchical hard vote of several models: the most voted supergroup, then
  the most voted group among its valid children, and so on; a level nobody voted a valid
  child for takes the most frequent valid child.
"""

import csv
import difflib
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from tfrecords import UserError
from tfrecords.product_text import LABELS

TAXONOMY = "taxonomy.csv"
Path = Tuple[str, str, str, str]


class Taxonomy:
    """The valid paths with their training counts.

    Args:
        paths: (supergroup, group, module, brand) tuples, each once.
        counts: how often each path was seen in training (same order).

    Example:
        >>> taxonomy = Taxonomy([("Food", "Dairy", "Yogurt", "Danone"), ("Food", "Dairy", "Cheese", "Kraft")], [5, 2])
        >>> taxonomy.snap(("Food", "Diary", "Yoghurt", "Danon"))
        ('Food', 'Dairy', 'Yogurt', 'Danone')
        >>> taxonomy.is_valid(("Food", "Dairy", "Yogurt", "Kraft"))
        False
    """

    def __init__(self, paths: Sequence[Sequence[str]], counts: Sequence[int]):
        if not paths:
            raise UserError("the taxonomy has no paths: was any training line labelled?")
        self.paths: List[Path] = [tuple(p) for p in paths]
        self.counts = [int(c) for c in counts]
        self.index: Dict[Path, int] = {path: i for i, path in enumerate(self.paths)}
        if len(self.index) != len(self.paths):
            raise UserError("the taxonomy lists a path twice")
        # prefix (the fields fixed so far) -> Counter of the next field's valid values.
        self._children: Dict[tuple, Counter] = {}
        for path, count in zip(self.paths, self.counts):
            for level in range(len(LABELS)):
                self._children.setdefault(path[:level], Counter())[path[level]] += count

    def children(self, prefix: Sequence[str]) -> Counter:
        return self._children.get(tuple(prefix), Counter())

    def is_valid(self, labels: Optional[Sequence[str]]) -> bool:
        return labels is not None and tuple(labels) in self.index

    def majority(self) -> Path:
        return self.paths[max(range(len(self.paths)), key=lambda i: (self.counts[i], -i))]

    def _most_frequent(self, children: Counter, ranked_by=lambda name: 0.0) -> str:
        # Deterministic: the rank, then the count, then the name.
        return max(sorted(children), key=lambda name: (ranked_by(name), children[name]))

    def snap(self, labels: Optional[Sequence[str]]) -> Path:
        """The valid path closest to `labels` field by field (None: the most frequent path's fields)."""
        labels = tuple(labels) if labels is not None else ("",) * len(LABELS)
        fixed: List[str] = []
        for value in labels:
            children = self.children(fixed)
            if value not in children:
                value = self._most_frequent(children, lambda name: difflib.SequenceMatcher(None, value, name).ratio())
            fixed.append(value)
        return tuple(fixed)

    def vote(self, votes: Sequence[Optional[Sequence[str]]]) -> Path:
        """The hierarchical hard vote of several models' outputs (None: a model without an output)."""
        fixed: List[str] = []
        for level in range(len(LABELS)):
            children = self.children(fixed)
            ballots = Counter(v[level] for v in votes if v is not None and tuple(v[:level]) == tuple(fixed)
                              and v[level] in children)
            fixed.append(self._most_frequent(children, lambda name: ballots[name]))
        return tuple(fixed)


def read_taxonomy(path: str) -> Taxonomy:
    """A `taxonomy.csv` (supergroup, group, module, brand, count)."""
    if not tf.io.gfile.exists(path):
        raise UserError(f"no {TAXONOMY} at {path}: convert the data with `yt8m-keras convert taxonomy`")
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    try:
        return Taxonomy([tuple(row[k] for k in LABELS) for row in rows], [int(row["count"]) for row in rows])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: not a taxonomy (columns {', '.join(LABELS)}, count): {e}") from None


def taxonomy_of_rows(rows: Sequence[Dict]) -> Taxonomy:
    """The taxonomy from a model's classes.csv rows (class_index, category_id, the four fields, count)."""
    return Taxonomy([tuple(row[k] for k in LABELS) for row in rows], [int(row["count"]) for row in rows])
