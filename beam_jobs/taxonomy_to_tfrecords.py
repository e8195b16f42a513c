"""IndoML 2024 datathon (NielsenIQ product taxonomy) JSON lines to `product_text` TFRecords.

    python -m beam_jobs.taxonomy_to_tfrecords --features train.features --labels train.labels \
        --features test.features --output data/taxonomy [--val-fraction 0.1] [--seed 0] \
        [--vocab-size 8000 | --tokenizer PRESET_OR_SPM] [--num-shards N] [--runner DataflowRunner ...]

Inputs (UTF-8 JSON lines, any file names; blank lines are skipped and are not records):

    --features  {"indoml_id": int, "description": str, "retailer": str, "price": number}
    --labels    {"indoml_id": int, "supergroup": str, "group": str, "module": str, "brand": str}

Joined on indoml_id. A features line with a label is labelled (train or val). A features
file none of whose lines is labelled is a test file: its lines go to `test` with empty
labels. A features file with at least one labelled line is a training file: its lines
without a label are dead letters (`features_without_label`), never test lines. A label
whose id no features line has is a dead letter (`label_without_features`). Converting only
test files (no --labels) needs `--tokenizer`: the tokenizer of the training data.

Output (OUTPUT/):

    {split}-{i:05d}-of-{n:05d}.tfrecord   `product_text` records, splits train, val, test;
                              a record goes to shard hash(seed, id) % n, and a shard holds
                              its records sorted by indoml_id; n = --num-shards (at most
                              the split's records) or one shard per 100,000 records
    taxonomy.csv              supergroup,group,module,brand,count: every path of the train
                              split with its count, sorted by the four strings
    vocabulary.spm            the SentencePiece tokenizer (pad 0 "<pad>", eos 1 "</s>",
                              unk 2 "<unk>", no bos), as `keras_hub.models.T5Tokenizer` takes it
    rejected.jsonl            one line per dead letter: file, offset (the 1-based line
                              number), reason, detail, indoml_id (null if unknown), field
    manifest.json             written last

Validation split (`--val-fraction f`, `--seed`): stratified on the label path. Each path's
records are ordered by a seeded hash of indoml_id, and position i goes to val when
floor((i + 1) * f) > floor(i * f): floor(n * f) of n records, never position 0, so a path
seen once stays in train and every labelled path is in `taxonomy.csv`.

Dead letters, by reason (Beam counters `rejected_<reason>`, the manifest's
`rejected_by_reason`): bad_utf8, bad_json, not_object, missing_field, wrong_type (indoml_id
an int64 integer, not a boolean; description and retailer strings; the four labels
non-empty strings; price a number finite as float32, not a boolean), bad_label (a label
with " > " or " | " in it, or spaces at its ends: the model's text `target_text` would not
read back as the four labels), duplicate_id (an id again in the same kind of file: the
first valid line by (file's place among its flags, line) is kept), label_without_features,
features_without_label. A label rejected for its own fault leaves its features line
without a label, so that line is a dead letter too.

Accounting: `input_records` counts records, where a record is a features line, or a label
line that did not join one (a label that joins its features line is part of that
record). So input_records = features lines + label lines - labels joined
(`input_lines`, `labels_joined` in the manifest) == written + rejected.

The tokenizer. `--tokenizer PATH` copies an existing one (a SentencePiece model file, or
a KerasHub preset directory holding assets/tokenizer/vocabulary.spm) after checking its
pad and eos ids. Otherwise the pipeline keeps a deterministic sample of the train split's
texts (`input_text` and `target_text` of each record; the --tokenizer-sentences with the
smallest seeded hash of indoml_id, default 1,000,000) and the launcher trains a unigram
model on it after the pipeline, single-threaded and without file paths in the proto, so
the same inputs and seed give the same bytes. The launcher trains, not a worker, so a
vocabulary too small for the text is one `error:` line. `identity` normalization and no
whitespace folding make detokenize(tokenize(target)) == target for every path seen.
(The sample, training and checks are `beam_jobs.sentencepiece_tokenizer`'s.)

Counters (namespace taxonomy_to_tfrecords): features_lines, label_lines, written,
rejected, rejected_<reason>.
"""

import codecs
import csv
import io
import json
import math
import posixpath
import sys
from collections import Counter
from fractions import Fraction
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import common
from beam_jobs.sentencepiece_tokenizer import (DEFAULT_SENTENCES, SampleSentences, check_tokenizer, read_tokenizer,
                                               seeded_rank, train_tokenizer, write_bytes_atomic)
from tfrecords import ArgumentParser, UserError, product_text
from tfrecords.manifest import join, write_text_atomic

NAMESPACE = "taxonomy_to_tfrecords"
FEATURES, LABELS = "features", "labels"
TRAIN, VAL, TEST = "train", "val", "test"
TAXONOMY_CSV = "taxonomy.csv"
TAXONOMY_COLUMNS = (*product_text.LABELS, "count")
TOKENIZER = "vocabulary.spm"
# ~15 MB of short text per shard: a few shards for the datathon's ~560k training lines.
RECORDS_PER_SHARD = 100_000
DEFAULT_VOCAB_SIZE = 8000
DEFAULT_TOKENIZER_SENTENCES = DEFAULT_SENTENCES
FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_RANGE = (-(2 ** 63), 2 ** 63 - 1)

BAD_UTF8 = "bad_utf8"
BAD_JSON = "bad_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
BAD_LABEL = "bad_label"
DUPLICATE_ID = "duplicate_id"
LABEL_WITHOUT_FEATURES = "label_without_features"
FEATURES_WITHOUT_LABEL = "features_without_label"
REASONS = (BAD_UTF8, BAD_JSON, NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, BAD_LABEL, DUPLICATE_ID,
           LABEL_WITHOUT_FEATURES, FEATURES_WITHOUT_LABEL)

REJECTED = "rejected"


class InputFile(NamedTuple):
    """One input: its kind (FEATURES or LABELS), its place among that kind's flags, its path."""

    kind: str
    index: int
    path: str


class Features(NamedTuple):
    """A valid features line and where it was."""

    indoml_id: int
    description: str
    retailer: str
    price: float
    file_index: int
    path: str
    line: int


class Labels(NamedTuple):
    """A valid label line and where it was."""

    indoml_id: int
    labels: Tuple[str, str, str, str]
    file_index: int
    path: str
    line: int


class Product(NamedTuple):
    """One record to write: a features line with its labels (None for a test line)."""

    indoml_id: int
    description: str
    retailer: str
    price: float
    labels: Optional[Tuple[str, str, str, str]]


class Invalid(NamedTuple):
    """Why a line is not a record: a reason of REASONS, a human detail, the field concerned."""

    reason: str
    detail: str
    field: Optional[str] = None
    indoml_id: Optional[int] = None


# ------------------------------------------------------------------------------ one line


def _json_type(value) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _id_problem(value) -> Optional[str]:
    if not _is_integer(value):
        return f"must be an integer, got a {_json_type(value)}"
    if not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
        return f"{value} is outside the int64 range"
    return None


def _text_problem(value, allow_empty: bool) -> Optional[str]:
    if not isinstance(value, str):
        return f"must be a string, got a {_json_type(value)}"
    if not value and not allow_empty:
        return "must not be empty"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON may escape a lone surrogate ("\ud800"): valid JSON, not text
        return "holds an unpaired surrogate escape"
    return None


def _price_problem(value) -> Optional[str]:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"must be a number, got a {_json_type(value)}"
    # Python's json reads NaN and Infinity; the record stores float32, where 1e39 is infinite too.
    if not abs(value) <= FLOAT32_MAX:
        return f"{value} is not finite as a float32"
    return None


FIELD_CHECKS = {
    FEATURES: ((product_text.ID, _id_problem),
               (product_text.DESCRIPTION, lambda v: _text_problem(v, allow_empty=True)),
               (product_text.RETAILER, lambda v: _text_problem(v, allow_empty=True)),
               (product_text.PRICE, _price_problem)),
    LABELS: ((product_text.ID, _id_problem),
             *((label, lambda v: _text_problem(v, allow_empty=False)) for label in product_text.LABELS)),
}


def parse_line(kind: str, raw: bytes) -> Union[Dict, Invalid]:
    """The fields of one non-blank line of a `kind` (FEATURES or LABELS) file, or why it is not a record.

    Example:

    >>> parse_line(FEATURES, b'{"indoml_id": 7, "description": "indomie", "retailer": "r1", "price": 3}')
    {'indoml_id': 7, 'description': 'indomie', 'retailer': 'r1', 'price': 3}
    >>> parse_line(LABELS, b'{"indoml_id": 7}').reason
    'missing_field'
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Invalid(BAD_UTF8, f"not UTF-8: {e.reason} at byte {e.start}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: thousands of nested brackets
        return Invalid(BAD_JSON, f"not JSON: {e}")
    if not isinstance(value, dict):
        return Invalid(NOT_OBJECT, f"a JSON {_json_type(value)}, not an object")
    indoml_id = value.get(product_text.ID)
    indoml_id = indoml_id if _id_problem(indoml_id) is None else None  # for the dead letter only
    for name, problem_of in FIELD_CHECKS[kind]:
        if name not in value:
            return Invalid(MISSING_FIELD, f"no {name!r} field", name, indoml_id)
        problem = problem_of(value[name])
        if problem:
            return Invalid(WRONG_TYPE, f"{name} {problem}", name, indoml_id)
    fields = {name: value[name] for name, _ in FIELD_CHECKS[kind]}
    if kind == LABELS:
        labels = tuple(fields[label] for label in product_text.LABELS)
        target = product_text.target_text(labels)
        if product_text.labels_of(target) != labels:
            return Invalid(BAD_LABEL, f"{target!r} does not read back as its four labels (a label holds "
                           f"{product_text.LEVEL_SEPARATOR!r} or {product_text.BRAND_SEPARATOR!r}, or has "
                           "spaces at its ends)", None, indoml_id)
    return fields


def _dead_letter(path: str, line: int, invalid: Invalid) -> Dict:
    return common.rejection(path, line, invalid.reason, detail=invalid.detail, indoml_id=invalid.indoml_id,
                            field=invalid.field)


# ------------------------------------------------------------------------------ read and join


class _ReadLines(beam.DoFn):
    """One input file, line by line: (indoml_id, Features | Labels), dead letters, the line count."""

    COUNTS = "counts"

    def __init__(self):
        self._lines = {FEATURES: Metrics.counter(NAMESPACE, "features_lines"),
                       LABELS: Metrics.counter(NAMESPACE, "label_lines")}

    def process(self, file: InputFile):
        lines = 0
        with FileSystems.open(file.path) as f:
            # readline, not iteration: Beam's compressed-file wrapper has only readline.
            for number, raw in enumerate(iter(f.readline, b""), start=1):
                if number == 1:
                    raw = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
                if not raw.strip():
                    continue
                lines += 1
                self._lines[file.kind].inc()
                parsed = parse_line(file.kind, raw.rstrip(b"\r\n"))
                if isinstance(parsed, Invalid):
                    yield beam.pvalue.TaggedOutput(REJECTED, _dead_letter(file.path, number, parsed))
                elif file.kind == FEATURES:
                    yield parsed[product_text.ID], Features(
                        parsed[product_text.ID], parsed[product_text.DESCRIPTION], parsed[product_text.RETAILER],
                        float(parsed[product_text.PRICE]), file.index, file.path, number)
                else:
                    yield parsed[product_text.ID], Labels(
                        parsed[product_text.ID], tuple(parsed[label] for label in product_text.LABELS),
                        file.index, file.path, number)
        yield beam.pvalue.TaggedOutput(self.COUNTS, {"kind": file.kind, "index": file.index, "path": file.path,
                                                     "lines": lines})


def _place(line: Union[Features, Labels]) -> Tuple[int, int]:
    return line.file_index, line.line


def _reject(line: Union[Features, Labels], reason: str, detail: str):
    return beam.pvalue.TaggedOutput(REJECTED, _dead_letter(line.path, line.line,
                                                           Invalid(reason, detail, None, line.indoml_id)))


def _product(features: Features, labels: Optional[Labels]) -> Product:
    return Product(features.indoml_id, features.description, features.retailer, features.price,
                   labels.labels if labels else None)


class _JoinId(beam.DoFn):
    """(indoml_id, its valid lines) -> a labelled Product; or its features line, still unresolved."""

    UNLABELLED = "unlabelled"
    LABELLED_FILES = "labelled_files"

    def process(self, element):
        indoml_id, lines = element
        lines = list(lines)
        features = sorted((x for x in lines if isinstance(x, Features)), key=_place)
        labels = sorted((x for x in lines if isinstance(x, Labels)), key=_place)
        for first, later in ((features[:1], features[1:]), (labels[:1], labels[1:])):
            for line in later:
                yield _reject(line, DUPLICATE_ID, f"indoml_id {indoml_id} repeats {first[0].path}:{first[0].line}")
        if not features:
            yield _reject(labels[0], LABEL_WITHOUT_FEATURES, f"no valid features line has indoml_id {indoml_id}")
        elif labels:
            yield _product(features[0], labels[0])
            yield beam.pvalue.TaggedOutput(self.LABELLED_FILES, features[0].file_index)
        else:
            # Test line or dead letter: that depends on the rest of its file (see _ResolveUnlabelled).
            yield beam.pvalue.TaggedOutput(self.UNLABELLED, features[0])


class _ResolveUnlabelled(beam.DoFn):
    """A features line without a label: a test line, unless its file has labelled lines."""

    def process(self, features: Features, labelled_files: List[int]):
        if features.file_index in labelled_files:
            yield _reject(features, FEATURES_WITHOUT_LABEL,
                          f"no valid label has indoml_id {features.indoml_id}, and other lines of "
                          f"{features.path} are labelled: it is a training file, not a test file")
        else:
            yield _product(features, None)


class ReadProducts(beam.PTransform):
    """InputFile elements -> (labelled Products, test Products, dead letters, line counts).

    Reads each file line by line (one worker per file), validates each line, joins features
    and labels on indoml_id and decides test lines (see the module doc). A line count is a
    dict per file: kind, index, path, lines (non-blank).

    Example:

    >>> files = p | beam.Create([InputFile(FEATURES, 0, "train.features"), InputFile(LABELS, 0, "train.labels"),
    ...                          InputFile(FEATURES, 1, "test.features")])
    >>> labelled, test, rejected, counts = files | ReadProducts()
    """

    def expand(self, files):
        read = files | "Read" >> beam.ParDo(_ReadLines()).with_outputs(REJECTED, _ReadLines.COUNTS, main="lines")
        joined = (read.lines
                  | "ById" >> beam.GroupByKey()
                  | "Join" >> beam.ParDo(_JoinId()).with_outputs(
                      REJECTED, _JoinId.UNLABELLED, _JoinId.LABELLED_FILES, main="labelled"))
        labelled_files = joined[_JoinId.LABELLED_FILES] | "LabelledFiles" >> beam.Distinct()
        resolved = joined[_JoinId.UNLABELLED] | "Resolve" >> beam.ParDo(
            _ResolveUnlabelled(), labelled_files=beam.pvalue.AsList(labelled_files)).with_outputs(
                REJECTED, main="test")
        rejected = (read[REJECTED], joined[REJECTED], resolved[REJECTED]) | "Rejected" >> beam.Flatten()
        return joined.labelled, resolved.test, rejected, read[_ReadLines.COUNTS]


# ------------------------------------------------------------------------------ splits


def assign_splits(products: Iterable[Product], fraction: float, seed: int) -> List[Tuple[str, Product]]:
    """(split, product) for the products of one label path: floor(n * fraction) of them in val.

    Ordered by the seeded hash of indoml_id, position i goes to val when
    floor((i + 1) * f) > floor(i * f); position 0 never does.

    Example:

    >>> milk = [Product(i, "susu", "r1", 1.0, ("Food", "Dairy", "Milk", "Ultra")) for i in range(10)]
    >>> [split for split, _ in assign_splits(milk, 0.2, seed=0)]  # in hash order
    ['train', 'train', 'train', 'train', 'val', 'train', 'train', 'train', 'train', 'val']
    >>> [product.indoml_id for split, product in assign_splits(milk, 0.2, seed=0) if split == VAL]
    [7, 0]
    """
    # Exact rationals: in floats 0.29 * 100 is 28.999999999999996, and a val line would go missing.
    f = Fraction(repr(float(fraction)))
    ordered = sorted(products, key=lambda product: (seeded_rank(seed, "val", product.indoml_id), product.indoml_id))
    return [(VAL if math.floor((i + 1) * f) > math.floor(i * f) else TRAIN, product)
            for i, product in enumerate(ordered)]


class _AssignSplits(beam.DoFn):
    TAXONOMY = "taxonomy"

    def __init__(self, fraction: float, seed: int):
        self._fraction, self._seed = fraction, seed

    def process(self, element):
        labels, products = element
        assigned = assign_splits(products, self._fraction, self._seed)
        yield from assigned
        yield beam.pvalue.TaggedOutput(self.TAXONOMY, {"path": list(labels),
                                                       "count": sum(split == TRAIN for split, _ in assigned)})


class SplitLabelled(beam.PTransform):
    """Labelled Products -> ((split, Product), taxonomy rows {"path": [4 labels], "count": train records}).

    Args:
        val_fraction: the share of each label path held out for validation (rounded down).
        seed: of the hash that orders each path's records.

    Example:

    >>> keyed, taxonomy = labelled | SplitLabelled(val_fraction=0.1, seed=0)
    """

    def __init__(self, val_fraction: float = 0.1, seed: int = 0):
        super().__init__()
        self._fraction, self._seed = val_fraction, seed

    def expand(self, labelled):
        result = (labelled
                  | "ByPath" >> beam.Map(lambda product: (product.labels, product))
                  | "GroupPaths" >> beam.GroupByKey()
                  | "Assign" >> beam.ParDo(_AssignSplits(self._fraction, self._seed)).with_outputs(
                      _AssignSplits.TAXONOMY, main="keyed"))
        return result.keyed, result[_AssignSplits.TAXONOMY]


# ------------------------------------------------------------------------------ shards


def shard_count(records: int, num_shards: Optional[int]) -> int:
    """A split's shards: --num-shards but no more than its records, else one per RECORDS_PER_SHARD."""
    return min(num_shards, records) if num_shards else max(1, -(-records // RECORDS_PER_SHARD))


def shard_tmp_path(output: str, split: str, shard: int) -> str:
    return common.tmp_path(output, f"{split}-{shard:05d}.tfrecord")


def encode(product: Product) -> bytes:
    return product_text.encode(product.indoml_id, product.description, product.retailer, product.price,
                               product.labels)


class _KeyByShard(beam.DoFn):
    def __init__(self, seed: int):
        self._seed = seed

    def process(self, element, shards: Dict[str, int]):
        split, product = element
        shard = seeded_rank(self._seed, "shard", product.indoml_id) % shards[split]
        yield (split, shard), (product.indoml_id, encode(product))


class _WriteShard(beam.DoFn):
    def __init__(self, output: str):
        self._output = output
        self._written = Metrics.counter(NAMESPACE, "written")

    def process(self, element):
        (split, shard), records = element
        path = shard_tmp_path(self._output, split, shard)
        tf.io.gfile.makedirs(posixpath.dirname(path))  # a no-op on object stores
        # Sorted by indoml_id (unique by now): the same bytes whatever order the records arrived in.
        ordered = sorted(records, key=lambda record: record[0])
        with tf.io.TFRecordWriter(path) as writer:
            for _, serialized in ordered:
                writer.write(serialized)
        self._written.inc(len(ordered))
        yield {"split": split, "order": shard, "records": len(ordered), "path": path}


class WriteShards(beam.PTransform):
    """(split, Product) -> (shard reports, {split: shards}); writes `_tmp/{split}-{shard:05d}.tfrecord`.

    A shard report is what `common.finalize` takes: split, order (the shard), records,
    path. A shard no record fell in gets no report (the launcher writes it empty).

    Args:
        output: the output directory.
        num_shards: shards per split (at most its records); None: one per RECORDS_PER_SHARD.
        seed: of the hash that puts a record in its shard.

    Example:

    >>> reports, shards = keyed | WriteShards("out", num_shards=4)
    """

    def __init__(self, output: str, num_shards: Optional[int] = None, seed: int = 0):
        super().__init__()
        self._output, self._num_shards, self._seed = output, num_shards, seed

    def expand(self, keyed):
        shards = (keyed
                  | "Splits" >> beam.Keys()
                  | "Count" >> beam.combiners.Count.PerElement()
                  | "Shards" >> beam.MapTuple(lambda split, n, limit=self._num_shards: (split, shard_count(n, limit))))
        reports = (keyed
                   | "KeyByShard" >> beam.ParDo(_KeyByShard(self._seed), shards=beam.pvalue.AsDict(shards))
                   | "ByShard" >> beam.GroupByKey()
                   | "Write" >> beam.ParDo(_WriteShard(self._output)))
        return reports, shards


# ------------------------------------------------------------------------------ tokenizer


def tokenizer_texts(product: Product) -> Tuple[int, Tuple[str, str]]:
    """(indoml_id, texts) of a train record for `SampleSentences`: the model's input and its target."""
    return product.indoml_id, (product_text.input_text(product.description, product.retailer, product.price),
                               product_text.target_text(product.labels))


# ------------------------------------------------------------------------------ launcher


def taxonomy_csv(rows: Iterable[Dict]) -> str:
    """taxonomy.csv's text: the paths with train records, sorted by the four strings."""
    paths = sorted((tuple(row["path"]), row["count"]) for row in rows if row["count"])
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([TAXONOMY_COLUMNS, *((*path, count) for path, count in paths)])
    return text.getvalue()


def _complete_shards(output: str, shards: Dict[str, int], reports: List[Dict]) -> List[Dict]:
    """The reports of every planned shard: an empty file where no record fell (hash collisions)."""
    written = {(r["split"], r["order"]) for r in reports}
    for split, count in shards.items():
        for shard in range(count):
            if (split, shard) not in written:
                path = shard_tmp_path(output, split, shard)
                with FileSystems.create(path):
                    pass
                reports.append({"split": split, "order": shard, "records": 0, "path": path})
    return reports


def _parser(prog: str) -> ArgumentParser:
    parser = common.job_parser(
        prog, "Convert the IndoML 2024 datathon's JSON lines (features and labels) to product_text TFRecords with a "
        "stratified validation split, taxonomy.csv and a SentencePiece tokenizer.")
    parser.add_argument("--features", action="append", required=True, metavar="PATH",
                        help="a features JSON-lines file (local or gs://); repeat for train and test")
    parser.add_argument("--labels", action="append", default=[], metavar="PATH",
                        help="a labels JSON-lines file; repeat or omit (then every features file is a test file)")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of each label path's records held out for validation, rounded down (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split and the shards (default 0)")
    parser.add_argument("--num-shards", type=int,
                        help=f"shards per split, at most its records (default: one per {RECORDS_PER_SHARD:,} records)")
    parser.add_argument("--vocab-size", type=int, help=f"pieces of the trained tokenizer, at most (default "
                        f"{DEFAULT_VOCAB_SIZE}; fewer when the text has fewer)")
    parser.add_argument("--tokenizer-sentences", type=int, help="texts the tokenizer is trained on, at most "
                        f"(default {DEFAULT_TOKENIZER_SENTENCES:,}; two per train record)")
    parser.add_argument("--tokenizer", metavar="PATH", help="use this tokenizer instead of training one: a "
                        "SentencePiece model file or a KerasHub preset directory (assets/tokenizer/vocabulary.spm)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def _check_flags(args) -> None:
    if not 0 <= args.val_fraction < 1:
        raise UserError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    for flag, value, low, high in (("--seed", args.seed, 0, 2 ** 32 - 1), ("--num-shards", args.num_shards, 1, 100000),
                                   ("--vocab-size", args.vocab_size, 8, 1_000_000),
                                   ("--tokenizer-sentences", args.tokenizer_sentences, 1, 100_000_000)):
        if value is not None and not low <= value <= high:
            raise UserError(f"{flag} must be in [{low}, {high}], got {value}")
    paths = [*args.features, *args.labels]
    repeated = sorted({path for path in paths if paths.count(path) > 1})
    if repeated:
        raise UserError(f"input given twice: {repeated[0]} (each file is read once, as features or as labels)")
    if args.tokenizer:
        given = [flag for flag, value in (("--vocab-size", args.vocab_size),
                                          ("--tokenizer-sentences", args.tokenizer_sentences)) if value is not None]
        if given:
            raise UserError(f"{given[0]} sets how a tokenizer is trained; --tokenizer uses an existing one: give one")
    elif not args.labels:
        raise UserError("no --labels: nothing to train a tokenizer on; pass --tokenizer (the one of the training data)")


def run(argv: Optional[List[str]] = None, prog: str = "python -m beam_jobs.taxonomy_to_tfrecords") -> Dict:
    """Runs the conversion; returns the manifest. Raises UserError for bad flags or inputs.

    Example:

    >>> manifest = run(["--features", "raw/train.features", "--labels", "raw/train.labels",
    ...                 "--features", "raw/test.features", "--output", "data/taxonomy"])
    >>> manifest["splits"]["val"]["records"], manifest["num_classes"], manifest["vocab_size"]
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pipeline_args = common.parse_args(_parser(prog), argv)
    _check_flags(args)
    common.check_inputs([*args.features, *args.labels])
    tokenizer = read_tokenizer(args.tokenizer) if args.tokenizer else None
    options = common.pipeline_options(pipeline_args)
    common.prepare_output(args.output, args.overwrite, [*args.features, *args.labels, *filter(None, [args.tokenizer])])

    inputs = ([InputFile(FEATURES, i, path) for i, path in enumerate(args.features)]
              + [InputFile(LABELS, i, path) for i, path in enumerate(args.labels)])
    with beam.Pipeline(options=options) as p:
        files = p | "Inputs" >> beam.Create(inputs, reshuffle=False) | "Spread" >> beam.Reshuffle()
        labelled, test, rejected, counts = files | "ReadProducts" >> ReadProducts()
        keyed, taxonomy = labelled | "Split" >> SplitLabelled(args.val_fraction, args.seed)
        everything = ((keyed, test | "AsTest" >> beam.Map(lambda product: (TEST, product)))
                      | "AllSplits" >> beam.Flatten())
        reports, shards = everything | "Write" >> WriteShards(args.output, args.num_shards, args.seed)
        if tokenizer is None:
            _ = (keyed
                 | "TrainOnly" >> beam.Filter(lambda kv: kv[0] == TRAIN)
                 | "TrainProducts" >> beam.Values()
                 | "Texts" >> beam.Map(tokenizer_texts)
                 | "Sample" >> SampleSentences(args.tokenizer_sentences or DEFAULT_TOKENIZER_SENTENCES, args.seed)
                 | "WriteSentences" >> common.WriteReport(args.output, "sentences"))
        _ = (rejected
             | "CountRejected" >> beam.Map(common.CountAs(NAMESPACE, "rejected"))
             | "CountReasons" >> beam.Map(common.CountReason(NAMESPACE))
             | "WriteRejected" >> common.WriteReport(args.output, "rejected"))
        _ = counts | "WriteCounts" >> common.WriteReport(args.output, "inputs")
        _ = reports | "WriteShardList" >> common.WriteReport(args.output, "shards")
        _ = (shards | "ShardsToDict" >> beam.MapTuple(lambda split, n: {"split": split, "shards": n})
             | "WriteShardCounts" >> common.WriteReport(args.output, "shard_counts"))
        _ = taxonomy | "WriteTaxonomy" >> common.WriteReport(args.output, "taxonomy")

    trained_on = None
    if tokenizer is None:
        sentences = sorted(common.read_report(args.output, "sentences"), key=lambda s: s["key"])
        trained_on = len(sentences)
        tokenizer = train_tokenizer([s["text"] for s in sentences], args.vocab_size or DEFAULT_VOCAB_SIZE,
                                    hint="pass --tokenizer to use an existing one")
    write_bytes_atomic(join(args.output, TOKENIZER), tokenizer)
    taxonomy_rows = common.read_report(args.output, "taxonomy")
    write_text_atomic(join(args.output, TAXONOMY_CSV), taxonomy_csv(taxonomy_rows))
    counts = sorted(common.read_report(args.output, "inputs"), key=lambda c: ((FEATURES, LABELS).index(c["kind"]),
                                                                                c["index"]))
    lines = {kind: sum(c["lines"] for c in counts if c["kind"] == kind) for kind in (FEATURES, LABELS)}
    shard_reports = _complete_shards(args.output, {r["split"]: r["shards"] for r in
                                                   common.read_report(args.output, "shard_counts")},
                                     common.read_report(args.output, "shards"))
    joined = sum(r["records"] for r in shard_reports if r["split"] in (TRAIN, VAL))
    rejected = common.read_report(args.output, "rejected")
    manifest = {
        "kind": product_text.KIND,
        "schema_version": product_text.SCHEMA_VERSION,
        "input_records": lines[FEATURES] + lines[LABELS] - joined,
        "input_lines": lines,
        "labels_joined": joined,
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
        "num_classes": sum(1 for row in taxonomy_rows if row["count"]),
        "taxonomy": TAXONOMY_CSV,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "tokenizer": TOKENIZER,
        "tokenizer_source": args.tokenizer or "trained",
        "vocab_size": check_tokenizer(tokenizer, TOKENIZER),
        "inputs": [{"path": c["path"], "kind": c["kind"], "lines": c["lines"]} for c in counts],
        "command": common.command_line(prog, argv),
    }
    if trained_on is not None:
        manifest["tokenizer_sentences"] = trained_on
    return common.finalize(args.output, manifest, shard_reports, rejected, "none")


if __name__ == "__main__":
    sys.exit(common.run_installed("beam_jobs.taxonomy_to_tfrecords"))
