"""Taxonomy evaluation (three decodings side by side) and the datathon's submission.

`evaluate` scores a training run on the validation split: item accuracy (all four fields
exact: the datathon's score), per-field accuracy and the share of outputs that are not a
valid path, for unconstrained decoding (greedy, beam), the winners' snapping of the beam
output, and constrained decoding (greedy, beam), with the majority path beside them.

`predict` runs exported models over the test split and writes one JSON line per line id
(`indoml_id, supergroup, group, module, brand`), constrained by default; with several
models, the winners' hierarchical hard vote.

Example:

>>> print(evaluate("model", "data", beams=4)["text"])
>>> predict(["export/t5_a/1", "export/t5_b/1"], "data", "submission.predict")
"""

import functools
import json
import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from tfrecords import UserError
from tfrecords import product_text as kind
from tfrecords.manifest import read_classes
from yt8m_keras.competitions.taxonomy.hierarchy import TAXONOMY, Taxonomy, read_taxonomy, taxonomy_of_rows
from yt8m_keras.competitions.taxonomy.input import parse_rows, read_split, split_files
from yt8m_keras.inference import Files, Plan, Submission, load_saved_model, require_saved_model, run_local, write_text
from yt8m_keras.progress import Progress
from yt8m_keras.recipes import read_yaml, recipe_from_dict

PREDICT_DECODINGS = ("constrained", "snapped", "unconstrained")


def scores(predicted: Sequence[Optional[tuple]], truth: Sequence[tuple], taxonomy: Taxonomy) -> Dict[str, float]:
    """Item accuracy, per-field accuracy and the share of outputs breaking the hierarchy."""
    n = max(len(truth), 1)
    result = {"item_accuracy": sum(p is not None and tuple(p) == tuple(t) for p, t in zip(predicted, truth)) / n}
    for level, name in enumerate(kind.LABELS):
        result[name] = sum(p is not None and p[level] == t[level] for p, t in zip(predicted, truth)) / n
    result["hierarchy_breaks"] = sum(not taxonomy.is_valid(p) for p in predicted) / n
    return result


def table(rows: Dict[str, Dict[str, float]]) -> str:
    columns = ["item_accuracy", *kind.LABELS, "hierarchy_breaks"]
    width = max(len(name) for name in rows) + 2
    lines = [f"{'decoding':<{width}}" + "".join(f"{c:>17}" for c in columns)]
    for name, values in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{values[c]:>17.4f}" for c in columns))
    return "\n".join(lines)


def evaluate(model_dir: str, data_dir: str, beams: int = 4, batch_size: int = 32, limit: Optional[int] = None) -> Dict:
    """Scores a training run's best weights on its validation split in every decoding."""
    from yt8m_keras.competitions.taxonomy.decoding import TaxonomyDecoder
    from yt8m_keras.train import load_trained

    recipe, classes, model = load_trained(model_dir)
    if recipe.task != "taxonomy":
        raise UserError(f"{model_dir} is a {recipe.task} run, not a taxonomy one")
    taxonomy = taxonomy_of_rows(classes)
    rows = [r for r in read_split(data_dir, recipe.data.val_split) if r[kind.SUPERGROUP]][:limit]
    if not rows:
        raise UserError(f"no labelled lines in the {recipe.data.val_split} split of {data_dir}")
    truth = [tuple(r[k] for k in kind.LABELS) for r in rows]
    decoder = TaxonomyDecoder(model, taxonomy, model.encoder_length, model.decoder_length, batch_size)
    encoded = decoder.encode(rows)
    results: Dict[str, Dict[str, float]] = {"majority path": scores([taxonomy.majority()] * len(rows), truth, taxonomy)}
    with Progress("decodings", total=4) as progress:
        for constrained in (False, True):
            for k in sorted({1, beams}):
                ids = decoder.generate(encoded, constrained=constrained, beams=k)
                search = "greedy" if k == 1 else f"beam {k}"
                if constrained:
                    results[f"constrained {search}"] = scores(decoder.labels(ids, "constrained"), truth, taxonomy)
                else:
                    results[f"unconstrained {search}"] = scores(decoder.labels(ids, "unconstrained"), truth, taxonomy)
                    results[f"snapped {search}"] = scores(decoder.labels(ids, "snapped"), truth, taxonomy)
                progress.update(1)
    text = (f"{len(rows)} validation lines of {data_dir} ({len(taxonomy.paths)} valid paths)\n" + table(results))
    return {"text": text, "scores": results, "lines": len(rows)}


class ExportedModel:
    """An exported taxonomy model: its taxonomy (classes.csv) and its signatures."""

    def __init__(self, path: str):
        extra = os.path.join(require_saved_model(path), "assets.extra")
        recipe = recipe_from_dict(read_yaml(os.path.join(extra, "recipe.yaml")))
        if recipe.task != "taxonomy":
            raise UserError(f"{path} is a {recipe.task} model, not a taxonomy one")
        self.path = path
        self.taxonomy = taxonomy_of_rows(read_classes(extra))

    @functools.cached_property
    def _loaded(self):  # loaded when first decoding: the launcher only checks the taxonomy
        import tensorflow_text  # noqa: F401 -- registers the SentencePiece ops the graph uses

        return load_saved_model(self.path)

    def __call__(self, rows: Sequence[Dict], decoding: str) -> List[Optional[tuple]]:
        # The signatures generate in fixed chunks of the export's batch size (padded inside the
        # graph), so a line's output never depends on the lines sent with it.
        inputs = {kind.DESCRIPTION: tf.constant([r[kind.DESCRIPTION] for r in rows]),
                  kind.RETAILER: tf.constant([r[kind.RETAILER] for r in rows]),
                  kind.PRICE: tf.constant([f"{r[kind.PRICE]:.2f}" for r in rows])}
        if decoding == "constrained":
            out = self._loaded.signatures["serving_default"](**inputs)
            columns = [[v.decode("utf-8") for v in out[level].numpy()] for level in kind.LABELS]
            return list(zip(*columns))
        texts = self._loaded.signatures["unconstrained"](**inputs)["text"].numpy()
        parsed = [kind.labels_of(t.decode("utf-8")) for t in texts]
        return [self.taxonomy.snap(p) for p in parsed] if decoding == "snapped" else parsed


class LineScorer:
    """Serialized lines -> (indoml_id, each model's four fields or None)."""

    def __init__(self, model_paths: Sequence[str], decoding: str):
        self.models = [ExportedModel(path) for path in model_paths]
        self.decoding = decoding

    def __call__(self, records: List[bytes]) -> List[tuple]:
        rows = parse_rows(records)
        outputs = [model(rows, self.decoding) for model in self.models]
        return [(row[kind.ID], tuple(o[i] for o in outputs)) for i, row in enumerate(rows)]


class LineSubmission(Submission):
    """One JSON line per indoml_id, sorted; with several models, the hierarchical hard vote."""

    def __init__(self, taxonomy: Taxonomy, decoding: str):
        self.taxonomy, self.decoding = taxonomy, decoding

    def write_rows(self, rows: List[tuple], path: str) -> Dict:
        rows = sorted(rows, key=lambda row: row[0])
        models = len(rows[0][1]) if rows else 1
        final = [self.taxonomy.vote(votes) if models > 1 else votes[0] for _, votes in rows]
        write_submission(path, [indoml_id for indoml_id, _ in rows], final)
        vote = f", hierarchical hard vote of {models} models" if models > 1 else ""
        breaks = sum(not self.taxonomy.is_valid(p) for p in final)
        return {"lines": len(rows), "models": models, "hierarchy_breaks": breaks,
                "text": f"wrote {path}: {len(rows)} lines ({self.decoding}{vote}; {breaks} outside the taxonomy)"}


def plan(model_paths: Sequence[str], data_dir: str, decoding: str = "constrained", split: str = "test",
         batch_size: int = 64) -> Plan:
    """Batch inference of `split`: the datathon's JSON lines."""
    if decoding not in PREDICT_DECODINGS:
        raise UserError(f"--decoding: one of {', '.join(PREDICT_DECODINGS)}, got {decoding!r}")
    taxonomy = read_taxonomy(os.path.join(data_dir, TAXONOMY))
    for model in [ExportedModel(path) for path in model_paths]:
        if model.taxonomy.paths != taxonomy.paths:
            raise UserError(f"{model.path} was trained on another taxonomy than {data_dir}'s")
    return Plan(Files(*split_files(data_dir, split)), functools.partial(LineScorer, list(model_paths), decoding),
                LineSubmission(taxonomy, decoding), batch_size, "lines")


def predict(model_paths: Sequence[str], data_dir: str, output: str, decoding: str = "constrained",
            split: str = "test", batch_size: int = 64) -> Dict:
    """Writes the submission (JSON lines sorted by indoml_id) for `split`; returns counts and `text`."""
    return run_local(plan(model_paths, data_dir, decoding, split, batch_size), output)


def write_submission(path: str, ids: Sequence[int], labels: Sequence[Optional[tuple]]) -> None:
    """One JSON object per line: indoml_id and the four fields (empty when unparseable), atomically."""
    lines = []
    for indoml_id, fields in zip(ids, labels):
        fields = fields or ("",) * len(kind.LABELS)
        lines.append(json.dumps({kind.ID: int(indoml_id), **dict(zip(kind.LABELS, fields))}, ensure_ascii=False) + "\n")
    write_text(path, "".join(lines))


def read_labels(path: str) -> Dict[int, tuple]:
    """A datathon label file (or a submission): indoml_id -> the four fields."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {int(r[kind.ID]): tuple(r[k] for k in kind.LABELS) for r in rows}


def score_submission(submission: str, truth: str, taxonomy: Taxonomy) -> Dict[str, float]:
    """The datathon's scores of a submission against a label file (ids of the submission)."""
    predicted, labels = read_labels(submission), read_labels(truth)
    ids = sorted(set(predicted) & set(labels))
    return scores([predicted[i] for i in ids], [labels[i] for i in ids], taxonomy)

