"""Avito Demand Prediction Challenge (Kaggle 2018) CSVs and pictures to `avito_ad` TFRecords.

    python -m beam_jobs.avito_to_tfrecords --csv train.csv --images train_jpg.zip \
        --csv test.csv --images test_jpg.zip --output data/avito [--folds 5] [--seed 0] \
        [--min-count 3] [--vocab-size 8000] [--tokenizer-sentences 1000000] [--num-shards N] \
        [--overwrite] [--runner DataflowRunner ...]

Inputs (local or gs://), in pairs:

    --csv      Kaggle's train.csv or test.csv: UTF-8 (a byte order mark is skipped), quoted as
               Python's csv module reads it (descriptions hold quotes, commas and newlines);
               a header naming at least item_id, user_id, region, city, parent_category_name,
               category_name, param_1, param_2, param_3, title, description, price,
               item_seq_number, activation_date, user_type, image, image_top_1, in any order
               (other columns are ignored). With a deal_probability column it is training
               data, without it test data.
    --images   that CSV's pictures, `<image>.jpg`: a folder, or a zip read in place (never
               extracted) holding them at any depth, as Kaggle's train_jpg.zip does
               (data/competition_files/train_jpg/<image>.jpg). In a zip the first member of
               a name, in the zip's order, is the picture.

Each CSV is read as a stream by one worker (a quoted newline means it cannot be split by
lines). A blank line is not a record.

Output (OUTPUT/):

    {split}-{i:05d}-of-{n:05d}.tfrecord   `avito_ad` records, splits train and test. Shard i
                              of a split holds a contiguous range of rows in row order
                              (split position p in shard p * n // records), so the shards
                              read in name order, train then test, give rows 0..N-1;
                              n = --num-shards (at most the split's records) or one shard
                              per 4,000 records (~150 MB with Avito's pictures)
    vocab_<column>.txt        for each column of `avito_ad.CATEGORICAL`: one value per line,
                              sorted (Python's str order), the values seen at least
                              --min-count times over the written ads of train AND test.
                              Codes: 0 = out of vocabulary or empty, i + 1 = line i (as
                              `keras.layers.StringLookup(vocabulary=path)` numbers them).
                              Empty values and values holding a line break (any that
                              str.splitlines splits on) are never in it: they get code 0.
    stats.json                ads, weekday_unknown, and for price and item_seq_number:
                              count (ads with a value), log1p_mean, log1p_std (population
                              std of log1p(value), null when count is 0), over the written
                              ads of train and test, summed exactly (the same bytes whatever
                              the workers)
    folds.csv                 item_id,fold: the train ads in row order
    vocabulary.spm            a SentencePiece unigram tokenizer of at most --vocab-size
                              pieces (pad 0 "<pad>", eos 1 "</s>", unk 2 "<unk>", no bos,
                              identity normalization), trained by the launcher on the titles
                              and descriptions of train AND test (see
                              `beam_jobs.sentencepiece_tokenizer`)
    rejected.jsonl            one line per ad not converted: file, offset (the first line of
                              its CSV record, 1-based, the header is line 1), csv_row (its
                              0-based place among the file's records), item_id (null if
                              none), field, reason, detail
    rejected_images.jsonl     one line per written ad whose picture is missing or broken:
                              file, offset, csv_row, item_id, image_name, picture (where it
                              was looked for: a path, or ZIP:MEMBER), reason (image_missing
                              or image_broken), detail
    manifest.json             written last

Rows. An ad's `row` is its place in the dataset: the train CSVs in --csv order, each in its
order of records, then the test CSVs. Dead letters take no row, so rows run 0..N-1 without
gaps (train 0..n_train-1, then test): a row indexes the image-feature memmaps and the
out-of-fold files.

Folds (--folds F, --seed): grouped by user_id, balanced like scikit-learn's GroupKFold but
seeded: the sellers, largest first (sellers with as many ads in the seed's hash order), each
go to the fold with the fewest train ads so far (the lowest fold on a tie). A seller's ads
are all in one fold; test ads have fold -1.

Each written ad: its CSV strings as they are (categorical columns, title, description,
image_name; "" when empty), price and item_seq_number (NaN when empty), the weekday of
activation_date (ISO 8601, 0 Monday; -1 when empty or not a date: the ad is still written
and counted in `weekday_unknown`, as a date is a feature, not the ad's identity),
deal_probability (-1 for test), fold, and its picture: image_status NO_IMAGE (no image
name), IMAGE_OK (the JPEG bytes as stored, which start with a JPEG marker and decode fully
with `tf.io.decode_jpeg`, as training decodes them), IMAGE_MISSING (named, but no such
file, or a name that is not a plain file name) or IMAGE_BROKEN (a file that is not a JPEG
or does not decode). A missing or broken picture costs only the picture: the ad is written
with its status and listed in rejected_images.jsonl; the manifest counts image_ok,
no_image, image_missing, image_broken.

Dead letters (rejected.jsonl; Beam counters `rejected_<reason>`; the manifest's
`rejected_by_reason`): bad_csv (the csv module cannot read the record, as a field longer
than its 131,072-character limit, typically a runaway quote; reading resumes at the next
line), bad_utf8, wrong_field_count (not as many fields as the header), empty_item_id,
empty_user_id, bad_price and bad_item_seq_number (not empty and not a decimal number,
negative, or not finite as a float32), bad_target (a training record's deal_probability
empty, not a number, or outside [0, 1]), duplicate_item_id (the first ad with the id in
row order is kept). input_records (CSV records) == written + rejected.

Same inputs and flags, same bytes: rows, shards, folds, vocabularies, statistics and the
tokenizer's sample do not depend on workers or timing.

Counters (namespace avito_to_tfrecords): rows_read, written, rejected, rejected_<reason>,
image_ok, no_image, image_missing, image_broken.
"""

import csv
import datetime
import heapq
import io
import json
import math
import posixpath
import re
import sys
import threading
import zipfile
import zlib
from collections import Counter
from fractions import Fraction
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import common
from beam_jobs.sentencepiece_tokenizer import (DEFAULT_SENTENCES, SampleSentences, check_tokenizer, seeded_rank,
                                               train_tokenizer, write_bytes_atomic)
from tfrecords import ArgumentParser, UserError, avito_ad
from tfrecords.avito_ad import CATEGORICAL, IMAGE_BROKEN, IMAGE_MISSING, IMAGE_OK, MISSING, NO_IMAGE
from tfrecords.manifest import join, write_text_atomic

NAMESPACE = "avito_to_tfrecords"
TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)
DATE = "activation_date"
IMAGE_COLUMN = "image"
TEST_COLUMNS = ("item_id", "user_id", "region", "city", "parent_category_name", "category_name", "param_1",
                "param_2", "param_3", "title", "description", "price", "item_seq_number", DATE, "user_type",
                IMAGE_COLUMN, "image_top_1")
TRAIN_COLUMNS = (*TEST_COLUMNS, avito_ad.TARGET)
IMAGE_SUFFIX = ".jpg"
JPEG_MAGIC = b"\xff\xd8\xff"

STATS = "stats.json"
FOLDS_CSV = "folds.csv"
TOKENIZER = "vocabulary.spm"
REJECTED_IMAGES = "rejected_images.jsonl"
RECORDS_PER_SHARD = 4000
DEFAULT_FOLDS = 5
DEFAULT_MIN_COUNT = 3
DEFAULT_VOCAB_SIZE = 8000
# Avito's texts hold many rare symbols and emoji: the rarest 0.05 % of characters become
# "<unk>" rather than crowd out the pieces (SentencePiece's own default).
CHARACTER_COVERAGE = 0.9995
# Bytes: a long description (a few thousand Cyrillic characters, 2 bytes each) is still
# trained on; SentencePiece's default (4192) would skip it.
MAX_SENTENCE_BYTES = 1 << 16
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Exact sums: log1p(x) * 2**1074 is an integer for every float64 (the smallest is 2**-1074).
_EXACT_BITS = 1074

BAD_CSV = "bad_csv"
BAD_UTF8 = "bad_utf8"
WRONG_FIELD_COUNT = "wrong_field_count"
EMPTY_ITEM_ID = "empty_item_id"
EMPTY_USER_ID = "empty_user_id"
BAD_PRICE = "bad_price"
BAD_ITEM_SEQ_NUMBER = "bad_item_seq_number"
BAD_TARGET = "bad_target"
DUPLICATE_ITEM_ID = "duplicate_item_id"
REASONS = (BAD_CSV, BAD_UTF8, WRONG_FIELD_COUNT, EMPTY_ITEM_ID, EMPTY_USER_ID, BAD_PRICE, BAD_ITEM_SEQ_NUMBER,
           BAD_TARGET, DUPLICATE_ITEM_ID)
STATUS_NAMES = {NO_IMAGE: "no_image", IMAGE_OK: "image_ok", IMAGE_MISSING: "image_missing",
                IMAGE_BROKEN: "image_broken"}

REJECTED = "rejected"


class InputFile(NamedTuple):
    """One --csv: its place in the dataset (train CSVs in flag order, then test), its pictures, its header."""

    order: int
    path: str
    images: str
    split: str
    header: Tuple[str, ...]


class Ad(NamedTuple):
    """A valid CSV record, with where it was."""

    item_id: str
    user_id: str
    title: str
    description: str
    categorical: Tuple[str, ...]  # in CATEGORICAL's order
    price: float
    item_seq_number: float
    weekday: int
    target: float  # MISSING for test ads
    image_name: str
    split: str
    order: int  # the InputFile's
    csv_row: int
    path: str
    line: int
    images: str


class Invalid(NamedTuple):
    """Why a CSV record is not an ad: a reason of REASONS, a human detail, the field concerned."""

    reason: str
    detail: str
    field: Optional[str] = None
    item_id: Optional[str] = None


# ------------------------------------------------------------------------------ one record


def parse_number(text: str) -> Optional[float]:
    """A decimal number finite as a float32 (spaces around allowed), else None.

    Example:

    >>> parse_number(" 400.0"), parse_number("1e39"), parse_number("nan")
    (400.0, None, None)
    """
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if abs(value) <= FLOAT32_MAX else None


def weekday_of(date: str) -> int:
    """The weekday of an ISO 8601 date (0 Monday .. 6 Sunday), or MISSING when empty or not a date."""
    try:
        return datetime.datetime.fromisoformat(date.strip()).weekday()
    except ValueError:
        return MISSING


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate escape of an undecodable byte
        return False
    return True


def _optional_count(text: str, field: str, reason: str) -> Union[float, Invalid]:
    """An empty field is NaN; otherwise a non-negative number."""
    if not text.strip():
        return math.nan
    value = parse_number(text)
    if value is None or value < 0:
        return Invalid(reason, f"{field} {text!r} is not a non-negative number", field)
    return value


def parse_row(values: Sequence[str], columns: Dict[str, int], split: str) -> Union[Dict, Invalid]:
    """The ad fields of one CSV record (its fields, decoded), or why it is not an ad.

    Args:
        values: the record's fields; a field holding undecodable bytes holds them as
            surrogate escapes (`errors="surrogateescape"`).
        columns: column name -> place in the header (no name twice).
        split: TRAIN (deal_probability is required) or TEST.

    Example:

    >>> header = TRAIN_COLUMNS
    >>> row = ["b912c3c6a6ad", "e00f8ff2eaf9", "Свердловская область", "Екатеринбург", "Личные вещи",
    ...        "Товары для детей и игрушки", "Постельные принадлежности", "", "", "Кокоби(кокон для сна)",
    ...        "Кокон для сна малыша,пользовались меньше месяца.цвет серый", "400", "2", "2017-03-28",
    ...        "Private", "d10c7e016e03247a3bf2d13348fe959fe6f436c1caf64c", "1008", "0.12789"]
    >>> ad = parse_row(row, {name: i for i, name in enumerate(header)}, TRAIN)
    >>> ad["weekday"], ad["price"], ad["target"]
    (1, 400.0, 0.12789)
    """
    item_id = values[columns[avito_ad.ITEM_ID]] if len(values) > columns[avito_ad.ITEM_ID] else None
    if not all(map(_is_text, values)):
        return Invalid(BAD_UTF8, "not UTF-8: the record holds bytes that do not decode", None,
                       item_id if item_id and _is_text(item_id) else None)
    if len(values) != len(columns):
        return Invalid(WRONG_FIELD_COUNT, f"{len(values)} fields, the header has {len(columns)}", None, item_id)
    field = {name: values[i] for name, i in columns.items()}
    for name, reason in ((avito_ad.ITEM_ID, EMPTY_ITEM_ID), (avito_ad.USER_ID, EMPTY_USER_ID)):
        if not field[name].strip():
            return Invalid(reason, f"{name} is empty", name, item_id or None)
    numbers = {}
    for name, reason in ((avito_ad.PRICE, BAD_PRICE), (avito_ad.ITEM_SEQ_NUMBER, BAD_ITEM_SEQ_NUMBER)):
        numbers[name] = _optional_count(field[name], name, reason)
        if isinstance(numbers[name], Invalid):
            return numbers[name]._replace(item_id=item_id)
    target = MISSING
    if split == TRAIN:
        target = parse_number(field[avito_ad.TARGET])
        if target is None or not 0 <= target <= 1:
            return Invalid(BAD_TARGET, f"{avito_ad.TARGET} {field[avito_ad.TARGET]!r} is not a number in [0, 1]",
                           avito_ad.TARGET, item_id)
    return {"item_id": item_id, "user_id": field[avito_ad.USER_ID], "title": field[avito_ad.TITLE],
            "description": field[avito_ad.DESCRIPTION], "categorical": tuple(field[c] for c in CATEGORICAL),
            "price": numbers[avito_ad.PRICE], "item_seq_number": numbers[avito_ad.ITEM_SEQ_NUMBER],
            "weekday": weekday_of(field[DATE]), "target": target, "image_name": field[IMAGE_COLUMN]}


def _dead_letter(path: str, line: int, csv_row: int, invalid: Invalid) -> Dict:
    return common.rejection(path, line, invalid.reason, csv_row=csv_row, detail=invalid.detail,
                            field=invalid.field, item_id=invalid.item_id)


# ------------------------------------------------------------------------------ read


def _text(stream) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")


def csv_records(path: str) -> Iterator[Tuple[int, int, Union[List[str], Invalid]]]:
    """(csv_row, first line, fields or Invalid) of each record after the header, as a stream.

    csv_row counts records from 0 (blank lines are not records); the line is 1-based, the
    header's is 1. A record the csv module cannot read (a field over its size limit: a
    runaway quote) is Invalid(BAD_CSV), and reading resumes at the next line.
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        reader = csv.reader(_text(f))
        next(reader, None)  # the header, checked by the launcher
        csv_row, end = 0, reader.line_num
        while True:
            start = end + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                values = Invalid(BAD_CSV, f"the csv module cannot read the record: {e}")
            end = reader.line_num
            if values == []:
                continue
            yield csv_row, start, values
            csv_row += 1


class _ReadAds(beam.DoFn):
    """One CSV, record by record: Ads, dead letters, the record count."""

    COUNTS = "counts"

    def __init__(self):
        self._read = Metrics.counter(NAMESPACE, "rows_read")

    def process(self, file: InputFile):
        columns = {name: i for i, name in enumerate(file.header)}
        records = 0
        for csv_row, line, values in csv_records(file.path):
            records += 1
            self._read.inc()
            parsed = values if isinstance(values, Invalid) else parse_row(values, columns, file.split)
            if isinstance(parsed, Invalid):
                yield beam.pvalue.TaggedOutput(REJECTED, _dead_letter(file.path, line, csv_row, parsed))
            else:
                yield Ad(**parsed, split=file.split, order=file.order, csv_row=csv_row, path=file.path, line=line,
                         images=file.images)
        yield beam.pvalue.TaggedOutput(self.COUNTS, {"order": file.order, "path": file.path, "images": file.images,
                                                     "split": file.split, "records": records})


class ReadAds(beam.PTransform):
    """InputFile elements -> (Ads, dead letters, record counts {order, path, images, split, records} per file).

    Example:

    >>> files = p | beam.Create([InputFile(0, "train.csv", "train_jpg.zip", TRAIN, header)])
    >>> ads, rejected, counts = files | ReadAds()
    """

    def expand(self, files):
        read = files | "Read" >> beam.ParDo(_ReadAds()).with_outputs(REJECTED, _ReadAds.COUNTS, main="ads")
        return read.ads, read[REJECTED], read[_ReadAds.COUNTS]


def _place(ad: Ad) -> Tuple[int, int]:
    return ad.order, ad.csv_row


class _KeepFirst(beam.DoFn):
    def process(self, element):
        item_id, ads = element
        first, *later = sorted(ads, key=_place)
        yield first
        for ad in later:
            yield beam.pvalue.TaggedOutput(REJECTED, _dead_letter(ad.path, ad.line, ad.csv_row, Invalid(
                DUPLICATE_ITEM_ID, f"item_id {item_id!r} repeats {first.path}:{first.line}", avito_ad.ITEM_ID,
                item_id)))


class DropDuplicates(beam.PTransform):
    """Ads -> (Ads with unique item_ids, dead letters): the first by (file's order, csv_row) is kept.

    Example:

    >>> kept, rejected = ads | DropDuplicates()
    """

    def expand(self, ads):
        result = (ads
                  | "ById" >> beam.Map(lambda ad: (ad.item_id, ad))
                  | "Group" >> beam.GroupByKey()
                  | "KeepFirst" >> beam.ParDo(_KeepFirst()).with_outputs(REJECTED, main="kept"))
        return result.kept, result[REJECTED]


# ------------------------------------------------------------------------------ rows and folds


class RowLayout:
    """Where the kept ads go: each one's row, and each split's first row and size.

    Args:
        kept: InputFile order -> the sorted csv_rows of its kept ads.
        files: the InputFiles (their order and split).
    """

    def __init__(self, kept: Dict[int, np.ndarray], files: Sequence[InputFile]):
        self._kept = kept
        self._offsets: Dict[int, int] = {}
        self.splits: Dict[str, Tuple[int, int]] = {}  # split -> (first row, records)
        row = 0
        for file in sorted(files, key=lambda f: f.order):
            count = len(kept.get(file.order, ()))
            self._offsets[file.order] = row
            start, records = self.splits.get(file.split, (row, 0))
            self.splits[file.split] = (start, records + count)
            row += count

    def row(self, ad: Ad) -> int:
        return self._offsets[ad.order] + int(np.searchsorted(self._kept[ad.order], ad.csv_row))


def _sorted_rows(order: int, csv_rows: Iterable[int]) -> Tuple[int, np.ndarray]:
    return order, np.sort(np.fromiter(csv_rows, dtype=np.int64))


class AssignRows(beam.PTransform):
    """Kept Ads -> ((row, Ad), a single RowLayout): rows 0..N-1 in the dataset's order (see the module doc).

    Only (file, csv_row) pairs are grouped (16 bytes an ad), never the ads.

    Args:
        files: the InputFiles the ads were read from.

    Example:

    >>> numbered, layout = kept | AssignRows(files)
    """

    def __init__(self, files: Sequence[InputFile]):
        super().__init__()
        self._files = list(files)

    def expand(self, ads):
        layout = (ads
                  | "Places" >> beam.Map(_place)
                  | "ByFile" >> beam.GroupByKey()
                  | "Sort" >> beam.MapTuple(_sorted_rows)
                  | "All" >> beam.combiners.ToDict()
                  | "Layout" >> beam.Map(RowLayout, self._files))
        numbered = ads | "Number" >> beam.Map(lambda ad, layout: (layout.row(ad), ad),
                                              layout=beam.pvalue.AsSingleton(layout))
        return numbered, layout


def assign_folds(group_sizes: Iterable[Tuple[str, int]], folds: int, seed: int) -> Dict[str, int]:
    """user_id -> fold: the largest groups first (equal sizes in a seeded order), each to the lightest fold.

    Like scikit-learn's GroupKFold (which breaks ties by input order) but seeded; a fold's
    weight is its ads, and a tie between folds goes to the lowest.

    Example:

    >>> assign_folds([("a", 5), ("b", 3), ("c", 2), ("d", 1)], folds=2, seed=0)
    {'a': 0, 'b': 1, 'c': 1, 'd': 0}
    """
    ordered = sorted(group_sizes, key=lambda group: (-group[1], seeded_rank(seed, "fold", group[0]), group[0]))
    heap = [(0, fold) for fold in range(folds)]
    assignment = {}
    for user, size in ordered:
        weight, fold = heapq.heappop(heap)
        assignment[user] = fold
        heapq.heappush(heap, (weight + size, fold))
    return assignment


class AssignFolds(beam.PTransform):
    """Train Ads -> a single dict user_id -> fold (`assign_folds` over the sellers' ad counts).

    Example:

    >>> folds = train_ads | AssignFolds(folds=5, seed=0)
    """

    def __init__(self, folds: int = DEFAULT_FOLDS, seed: int = 0):
        super().__init__()
        self._folds, self._seed = folds, seed

    def expand(self, ads):
        return (ads
                | "Users" >> beam.Map(lambda ad: ad.user_id)
                | "Count" >> beam.combiners.Count.PerElement()
                | "All" >> beam.combiners.ToList()
                | "Assign" >> beam.Map(assign_folds, self._folds, self._seed))


# ------------------------------------------------------------------------------ vocabularies and statistics


def categorical_values(ad: Ad) -> Iterator[Tuple[str, str]]:
    """(column, value) of an ad's categorical values that a vocabulary may hold: not empty, one line."""
    for column, value in zip(CATEGORICAL, ad.categorical):
        if value.splitlines() == [value]:
            yield column, value


class Vocabularies(beam.PTransform):
    """Ads -> dicts {"column", "values"}: each column's values seen at least `min_count` times, sorted.

    A column none of whose values is frequent enough has no dict.

    Example:

    >>> vocabularies = ads | Vocabularies(min_count=3)
    """

    def __init__(self, min_count: int = DEFAULT_MIN_COUNT):
        super().__init__()
        self._min_count = min_count

    def expand(self, ads):
        return (ads
                | "Values" >> beam.FlatMap(categorical_values)
                | "Count" >> beam.combiners.Count.PerElement()
                | "Frequent" >> beam.Filter(lambda counted, least: counted[1] >= least, self._min_count)
                | "ByColumn" >> beam.MapTuple(lambda column_value, _: column_value)
                | "Group" >> beam.GroupByKey()
                | "Sort" >> beam.MapTuple(lambda column, values: {"column": column, "values": sorted(values)}))


def _exact(x: float) -> int:
    """x * 2**1074 as an integer: exact for every finite float64."""
    numerator, denominator = x.as_integer_ratio()
    return numerator * ((1 << _EXACT_BITS) // denominator)


def log_moments(moments: Sequence[int]) -> Dict:
    """{count, log1p_mean, log1p_std} of exact sums [count, sum of x * 2**1074, sum of its squares]."""
    count, total, squares = moments
    if not count:
        return {"count": 0, "log1p_mean": None, "log1p_std": None}
    mean = Fraction(total, count << _EXACT_BITS)
    variance = Fraction(squares, count << (2 * _EXACT_BITS)) - mean * mean
    return {"count": count, "log1p_mean": float(mean), "log1p_std": math.sqrt(float(variance))}


class _StatsFn(beam.CombineFn):
    """Counts and exact sums: integers add up the same in any order, so the result is deterministic."""

    NUMBERS = (avito_ad.PRICE, avito_ad.ITEM_SEQ_NUMBER)

    def create_accumulator(self):
        return {"ads": 0, "weekday_unknown": 0, **{name: [0, 0, 0] for name in self.NUMBERS}}

    def add_input(self, accumulator, ad: Ad):
        accumulator["ads"] += 1
        accumulator["weekday_unknown"] += ad.weekday == MISSING
        for name in self.NUMBERS:
            value = getattr(ad, name)
            if not math.isnan(value):
                x = _exact(math.log1p(value))
                moments = accumulator[name]
                moments[0], moments[1], moments[2] = moments[0] + 1, moments[1] + x, moments[2] + x * x
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for key in ("ads", "weekday_unknown"):
                merged[key] += accumulator[key]
            for name in self.NUMBERS:
                merged[name] = [a + b for a, b in zip(merged[name], accumulator[name])]
        return merged

    def extract_output(self, accumulator):
        return {"ads": accumulator["ads"], "weekday_unknown": accumulator["weekday_unknown"],
                **{name: log_moments(accumulator[name]) for name in self.NUMBERS}}


class NumberStats(beam.PTransform):
    """Ads -> a single stats dict (see stats.json in the module doc).

    Example:

    >>> stats = ads | NumberStats()
    """

    def expand(self, ads):
        return ads | "Combine" >> beam.CombineGlobally(_StatsFn())


def ad_texts(ad: Ad) -> Tuple[str, Tuple[str, ...]]:
    """(item_id, its non-empty title and description) for `SampleSentences`."""
    return ad.item_id, tuple(text for text in (ad.title, ad.description) if text)


# ------------------------------------------------------------------------------ pictures


class Picture(NamedTuple):
    """An ad's picture: its status, the JPEG (IMAGE_OK only), what is wrong and where it was looked for."""

    status: int
    jpeg: bytes = b""
    problem: str = ""
    path: str = ""


class _Unreadable(Exception):
    """A picture that is there but cannot be read out of its zip (a corrupt member)."""


def is_zip(images: str) -> bool:
    return images.lower().endswith(".zip")


class PictureFolder:
    """`<name>.jpg` files in a folder (local or gs://)."""

    def __init__(self, directory: str):
        self.directory = directory

    def locate(self, name: str) -> str:
        return join(self.directory, name + IMAGE_SUFFIX)

    def read(self, name: str) -> Optional[bytes]:
        """The file's bytes, or None when there is no such file."""
        path = self.locate(name)
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                return f.read()
        except (OSError, BeamIOError):
            if FileSystems.exists(path):
                raise  # there but unreadable now (a network error): Beam retries the bundle
            return None


class PictureArchive:
    """`<name>.jpg` members of a zip at any depth, read in place through a seekable stream.

    The index (name -> member) is built once from the zip's central directory. Reading
    members from several threads is safe: zipfile serialises the seeks and reads of the
    shared file.
    """

    def __init__(self, path: str):
        self.path = path
        stream = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        try:
            self._zip = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, EOFError) as e:
            stream.close()
            raise UserError(f"--images {path} is not a zip file: {e}") from None
        self._members: Dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if base.endswith(IMAGE_SUFFIX) and not info.is_dir():
                self._members.setdefault(base[:-len(IMAGE_SUFFIX)], info)

    def locate(self, name: str) -> str:
        info = self._members.get(name)
        return f"{self.path}:{info.filename if info else name + IMAGE_SUFFIX}"

    def read(self, name: str) -> Optional[bytes]:
        """The member's bytes (CRC checked), or None when the zip has no such picture."""
        info = self._members.get(name)
        if info is None:
            return None
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
            raise _Unreadable(f"cannot read the member out of the zip: {type(e).__name__}: {e}") from None


_ARCHIVES: Dict[Tuple, PictureArchive] = {}
_ARCHIVES_LOCK = threading.Lock()


def open_archive(path: str) -> PictureArchive:
    """One PictureArchive per zip (and version of it) per process, shared by a worker's threads.

    Its index is large (1.4 million names in Kaggle's train_jpg.zip): one copy, not one per thread.
    """
    metadata = FileSystems.match([path])[0].metadata_list[0]
    key = (path, metadata.size_in_bytes, metadata.last_updated_in_seconds)
    with _ARCHIVES_LOCK:
        if key not in _ARCHIVES:
            for stale in [k for k in _ARCHIVES if k[0] == path]:
                del _ARCHIVES[stale]
            _ARCHIVES[key] = PictureArchive(path)
        return _ARCHIVES[key]


def picture_source(images: str) -> Union[PictureFolder, PictureArchive]:
    return open_archive(images) if is_zip(images) else PictureFolder(images)


def jpeg_problem(data: bytes) -> Optional[str]:
    """Why `data` is not a JPEG that training can decode, or None. Decodes it fully."""
    if not data.startswith(JPEG_MAGIC):
        return "not a JPEG: it does not start with the FF D8 FF marker"
    try:
        tf.io.decode_jpeg(data, channels=3)
    except tf.errors.OpError as e:  # truncated or corrupt
        return f"the JPEG does not decode: {e.message.rsplit('}} ', 1)[-1].strip()}"
    return None


def _plain_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "\\" not in name and name.isprintable()


def load_picture(source: Union[PictureFolder, PictureArchive], image_name: str) -> Picture:
    """The picture an ad names, with its status (see the module doc).

    Example:

    >>> load_picture(PictureFolder("train_jpg"), "d10c7e016e03").status == avito_ad.IMAGE_OK
    """
    if not image_name:
        return Picture(NO_IMAGE)
    if not _plain_name(image_name):
        return Picture(IMAGE_MISSING, problem="the image name is not a plain file name", path=image_name)
    path = source.locate(image_name)
    try:
        data = source.read(image_name)
    except _Unreadable as e:
        return Picture(IMAGE_BROKEN, problem=str(e), path=path)
    if data is None:
        return Picture(IMAGE_MISSING, problem="no such picture", path=path)
    problem = jpeg_problem(data)
    return Picture(IMAGE_BROKEN, problem=problem, path=path) if problem else Picture(IMAGE_OK, data, path=path)


# ------------------------------------------------------------------------------ shards


def shard_count(records: int, num_shards: Optional[int]) -> int:
    """A split's shards: --num-shards but no more than its records, else one per RECORDS_PER_SHARD."""
    return min(num_shards, records) if num_shards else max(1, -(-records // RECORDS_PER_SHARD))


def encode(ad: Ad, row: int, picture: Picture, fold: int) -> bytes:
    """The `avito_ad` record of an ad at its row, with its picture and fold."""
    return avito_ad.encode(
        ad.item_id, ad.user_id, row, title=ad.title, description=ad.description, weekday=ad.weekday,
        price=ad.price, item_seq_number=ad.item_seq_number, image=picture.jpeg, image_name=ad.image_name,
        image_status=picture.status, deal_probability=ad.target, fold=fold, **dict(zip(CATEGORICAL, ad.categorical)))


def _image_letter(ad: Ad, picture: Picture) -> Dict:
    return common.rejection(ad.path, ad.line, STATUS_NAMES[picture.status], csv_row=ad.csv_row, item_id=ad.item_id,
                            image_name=ad.image_name, picture=picture.path, detail=picture.problem)


def _csv_line(values: Sequence) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(values)
    return text.getvalue()


class _KeyByShard(beam.DoFn):
    def __init__(self, num_shards: Optional[int]):
        self._num_shards = num_shards

    def process(self, element, layout: RowLayout):
        row, ad = element
        start, records = layout.splits[ad.split]
        shard = (row - start) * shard_count(records, self._num_shards) // records
        yield (ad.split, shard), element


class _WriteShard(beam.DoFn):
    """Writes one shard in row order, reading each ad's picture; yields its report and the picture problems."""

    IMAGES = "images"

    def __init__(self, output: str):
        self._output = output
        self._written = Metrics.counter(NAMESPACE, "written")
        self._statuses = {status: Metrics.counter(NAMESPACE, name) for status, name in STATUS_NAMES.items()}
        self._sources = {}

    def setup(self):
        self._sources = {}

    def _picture(self, ad: Ad) -> Picture:
        if ad.images not in self._sources:
            self._sources[ad.images] = picture_source(ad.images)
        return load_picture(self._sources[ad.images], ad.image_name)

    def process(self, element, folds: Dict[str, int]):
        (split, shard), numbered = element
        path = common.tmp_path(self._output, f"{split}-{shard:05d}.tfrecord")
        folds_path = common.tmp_path(self._output, f"folds-{shard:05d}.csv") if split == TRAIN else None
        tf.io.gfile.makedirs(posixpath.dirname(path))  # a no-op on object stores
        statuses, fold_lines, records = Counter(), [], 0
        with tf.io.TFRecordWriter(path) as writer:
            for row, ad in sorted(numbered, key=lambda pair: pair[0]):
                picture = self._picture(ad)
                fold = folds[ad.user_id] if split == TRAIN else MISSING
                writer.write(encode(ad, row, picture, fold))
                records += 1
                statuses[STATUS_NAMES[picture.status]] += 1
                self._statuses[picture.status].inc()
                if picture.problem:
                    yield beam.pvalue.TaggedOutput(self.IMAGES, _image_letter(ad, picture))
                if folds_path:
                    fold_lines.append(_csv_line((ad.item_id, fold)))
        if folds_path:
            with FileSystems.create(folds_path) as f:
                f.write("".join(fold_lines).encode("utf-8"))
        self._written.inc(records)
        yield {"split": split, "order": shard, "records": records, "path": path, "statuses": dict(statuses),
               "folds_path": folds_path}


class WriteShards(beam.PTransform):
    """(row, Ad) -> (shard reports, picture dead letters); writes `_tmp/{split}-{shard:05d}.tfrecord`.

    A shard report is what `common.finalize` takes (split, order: the shard, records, path)
    plus statuses (status name -> ads) and folds_path (train shards: their item_id,fold
    lines, in row order). Every planned shard gets at least one record.

    Args:
        output: the output directory.
        num_shards: shards per split (at most its records); None: one per RECORDS_PER_SHARD.
        layout: AssignRows' RowLayout (a single-element PCollection).
        folds: AssignFolds' dict (a single-element PCollection).

    Example:

    >>> reports, image_letters = numbered | WriteShards("out", None, layout, folds)
    """

    def __init__(self, output: str, num_shards: Optional[int], layout, folds):
        super().__init__()
        self._output, self._num_shards, self._layout, self._folds = output, num_shards, layout, folds

    def expand(self, numbered):
        written = (numbered
                   | "KeyByShard" >> beam.ParDo(_KeyByShard(self._num_shards),
                                                layout=beam.pvalue.AsSingleton(self._layout))
                   | "ByShard" >> beam.GroupByKey()
                   | "Write" >> beam.ParDo(_WriteShard(self._output), folds=beam.pvalue.AsSingleton(self._folds)
                                           ).with_outputs(_WriteShard.IMAGES, main="reports"))
        return written.reports, written[_WriteShard.IMAGES]


# ------------------------------------------------------------------------------ launcher


def read_header(path: str) -> Tuple[str, ...]:
    """A CSV's header, checked: no column twice, and every column of its split (UserError otherwise)."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            header = next(csv.reader(_text(f)), None)  # _text: a bad byte in a later record is that record's fault
    except csv.Error as e:
        raise UserError(f"{path}: the header is not valid CSV: {e}") from None
    except (OSError, BeamIOError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not header:
        raise UserError(f"{path} is empty: expected a header (item_id,user_id,...)")
    if not all(map(_is_text, header)):
        raise UserError(f"{path}: the header is not UTF-8 text")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise UserError(f"{path}: the header names {repeated[0]!r} twice")
    required = TRAIN_COLUMNS if avito_ad.TARGET in header else TEST_COLUMNS
    missing = [name for name in required if name not in header]
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)} (it has: {', '.join(header)})")
    return tuple(header)


def check_images(images: str) -> None:
    """A local --images folder exists; a zip opens (its index is built once per process, here too)."""
    if is_zip(images):
        open_archive(images)
    elif "://" not in images and not FileSystems.exists(images):
        raise UserError(f"--images {images} not found")
    elif "://" not in images and not tf.io.gfile.isdir(images):
        raise UserError(f"--images {images} is neither a folder nor a .zip file")


def input_files(csvs: Sequence[str], images: Sequence[str]) -> List[InputFile]:
    """The --csv/--images pairs in the dataset's order: train CSVs in flag order, then test CSVs."""
    pairs = []
    for path, pictures in zip(csvs, images):
        header = read_header(path)
        check_images(pictures)
        pairs.append((TRAIN if avito_ad.TARGET in header else TEST, path, pictures, header))
    pairs.sort(key=lambda pair: SPLITS.index(pair[0]))  # stable: flag order within a split
    return [InputFile(order, path, pictures, split, header)
            for order, (split, path, pictures, header) in enumerate(pairs)]


def write_folds_csv(output: str, reports: Sequence[Dict]) -> None:
    """folds.csv from the train shards' pieces, concatenated in shard order (so in row order)."""
    path = join(output, FOLDS_CSV)
    with tf.io.gfile.GFile(path + ".tmp", "w") as out:
        out.write(_csv_line((avito_ad.ITEM_ID, avito_ad.FOLD)))
        for report in sorted((r for r in reports if r["split"] == TRAIN), key=lambda r: r["order"]):
            with tf.io.gfile.GFile(report["folds_path"], "r") as piece:
                out.write(piece.read())
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def vocab_name(column: str) -> str:
    return f"vocab_{column}.txt"


def _jsonl(rows: Iterable[Dict]) -> str:
    return "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)


def _parser(prog: str) -> ArgumentParser:
    parser = common.job_parser(
        prog, "Convert the Avito Demand Prediction Challenge's CSVs and pictures to avito_ad TFRecords with "
        "user-grouped folds, vocabularies, number statistics and a SentencePiece tokenizer.")
    parser.add_argument("--csv", action="append", required=True, metavar="CSV",
                        help="train.csv (has a deal_probability column) or test.csv; repeat, each with its --images")
    parser.add_argument("--images", action="append", required=True, metavar="DIR_OR_ZIP",
                        help="the previous --csv's pictures: a folder of <image>.jpg or a .zip holding them "
                        "(Kaggle's train_jpg.zip), local or gs://")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                        help=f"cross-validation folds, grouped by user_id (default {DEFAULT_FOLDS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and the tokenizer's sample (default 0)")
    parser.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT, help="ads (train and test) a "
                        f"categorical value needs to be in its vocabulary (default {DEFAULT_MIN_COUNT})")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE, help="pieces of the tokenizer, at "
                        f"most (default {DEFAULT_VOCAB_SIZE}; fewer when the text has fewer)")
    parser.add_argument("--tokenizer-sentences", type=int, default=DEFAULT_SENTENCES, help="texts (titles and "
                        f"descriptions) the tokenizer is trained on, at most (default {DEFAULT_SENTENCES:,})")
    parser.add_argument("--num-shards", type=int,
                        help=f"shards per split, at most its records (default: one per {RECORDS_PER_SHARD:,} ads)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def _check_flags(args) -> None:
    if len(args.csv) != len(args.images):
        raise UserError(f"--csv and --images come in pairs: got {len(args.csv)} --csv and {len(args.images)} --images")
    repeated = sorted({path for path in args.csv if args.csv.count(path) > 1})
    if repeated:
        raise UserError(f"--csv given twice: {repeated[0]}")
    for flag, value, low, high in (("--folds", args.folds, 1, 100), ("--seed", args.seed, 0, 2 ** 32 - 1),
                                   ("--min-count", args.min_count, 1, 10 ** 9),
                                   ("--vocab-size", args.vocab_size, 8, 1_000_000),
                                   ("--tokenizer-sentences", args.tokenizer_sentences, 1, 100_000_000),
                                   ("--num-shards", args.num_shards, 1, 100_000)):
        if value is not None and not low <= value <= high:
            raise UserError(f"{flag} must be in [{low}, {high}], got {value}")


def run(argv: Optional[List[str]] = None, prog: str = "python -m beam_jobs.avito_to_tfrecords") -> Dict:
    """Runs the conversion; returns the manifest. Raises UserError for bad flags or inputs.

    Example:

    >>> manifest = run(["--csv", "raw/train.csv", "--images", "raw/train_jpg.zip", "--csv", "raw/test.csv",
    ...                 "--images", "raw/test_jpg.zip", "--output", "data/avito"])
    >>> manifest["splits"]["train"]["records"], manifest["image_broken"], manifest["vocab_sizes"]["region"]
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pipeline_args = common.parse_args(_parser(prog), argv)
    _check_flags(args)
    common.check_inputs([*args.csv, *filter(is_zip, args.images)])
    files = input_files(args.csv, args.images)
    options = common.pipeline_options(pipeline_args)
    common.prepare_output(args.output, args.overwrite, [*args.csv, *args.images])

    with beam.Pipeline(options=options) as p:
        inputs = p | "Inputs" >> beam.Create(files, reshuffle=False) | "Spread" >> beam.Reshuffle()
        ads, bad_rows, counts = inputs | "ReadAds" >> ReadAds()
        kept, duplicates = ads | "DropDuplicates" >> DropDuplicates()
        numbered, layout = kept | "AssignRows" >> AssignRows(files)
        folds = (kept | "TrainOnly" >> beam.Filter(lambda ad: ad.split == TRAIN)
                 | "AssignFolds" >> AssignFolds(args.folds, args.seed))
        reports, image_letters = numbered | "Write" >> WriteShards(args.output, args.num_shards, layout, folds)
        _ = (kept | "Vocabularies" >> Vocabularies(args.min_count)
             | "WriteVocabularies" >> common.WriteReport(args.output, "vocabularies"))
        _ = kept | "Stats" >> NumberStats() | "WriteStats" >> common.WriteReport(args.output, "stats")
        _ = (kept | "Texts" >> beam.Map(ad_texts)
             | "Sample" >> SampleSentences(args.tokenizer_sentences, args.seed)
             | "WriteSentences" >> common.WriteReport(args.output, "sentences"))
        _ = ((bad_rows, duplicates) | "Rejected" >> beam.Flatten()
             | "CountRejected" >> beam.Map(common.CountAs(NAMESPACE, "rejected"))
             | "CountReasons" >> beam.Map(common.CountReason(NAMESPACE))
             | "WriteRejected" >> common.WriteReport(args.output, REJECTED))
        _ = image_letters | "WriteImageLetters" >> common.WriteReport(args.output, "rejected_images")
        _ = counts | "WriteCounts" >> common.WriteReport(args.output, "inputs")
        _ = reports | "WriteShardList" >> common.WriteReport(args.output, "shards")
    return _finish(args, argv, prog)


def _finish(args, argv: Sequence[str], prog: str) -> Dict:
    """After the pipeline: the tokenizer, the small files, then the manifest (last)."""
    output = args.output
    sentences = sorted(common.read_report(output, "sentences"), key=lambda s: s["key"])
    tokenizer = train_tokenizer([s["text"] for s in sentences], args.vocab_size, CHARACTER_COVERAGE,
                                MAX_SENTENCE_BYTES)
    write_bytes_atomic(join(output, TOKENIZER), tokenizer)
    vocabularies = {r["column"]: r["values"] for r in common.read_report(output, "vocabularies")}
    for column in CATEGORICAL:
        write_text_atomic(join(output, vocab_name(column)), "".join(v + "\n" for v in vocabularies.get(column, [])))
    stats = common.read_report(output, "stats")[0]
    write_text_atomic(join(output, STATS), json.dumps(stats, indent=2, sort_keys=True) + "\n")
    reports = common.read_report(output, "shards")
    write_folds_csv(output, reports)
    image_letters = sorted(common.read_report(output, "rejected_images"), key=lambda r: (r["file"], r["offset"]))
    write_text_atomic(join(output, REJECTED_IMAGES), _jsonl(image_letters))
    statuses = Counter()
    for report in reports:
        statuses.update(report["statuses"])
    counts = sorted(common.read_report(output, "inputs"), key=lambda c: c["order"])
    rejected = common.read_report(output, REJECTED)
    manifest = {
        "kind": avito_ad.KIND,
        "schema_version": avito_ad.SCHEMA_VERSION,
        "input_records": sum(c["records"] for c in counts),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
        **{name: statuses[name] for name in STATUS_NAMES.values()},
        "rejected_images": REJECTED_IMAGES,
        "weekday_unknown": stats["weekday_unknown"],
        "row_order": "train CSVs in --csv order, then test CSVs; each in its order of records",
        "folds": args.folds,
        "folds_csv": FOLDS_CSV,
        "seed": args.seed,
        "min_count": args.min_count,
        "vocabularies": {column: vocab_name(column) for column in CATEGORICAL},
        "vocab_sizes": {column: len(vocabularies.get(column, [])) for column in CATEGORICAL},
        "vocabulary_codes": "0 = out of vocabulary or empty, i + 1 = line i",
        "stats": STATS,
        "tokenizer": TOKENIZER,
        "vocab_size": check_tokenizer(tokenizer, TOKENIZER),
        "tokenizer_sentences": len(sentences),
        "inputs": [{"path": c["path"], "images": c["images"], "split": c["split"], "records": c["records"]}
                   for c in counts],
        "command": common.command_line(prog, argv),
    }
    return common.finalize(output, manifest, reports, rejected, "none", split_order=SPLITS)


if __name__ == "__main__":
    sys.exit(common.run_installed("beam_jobs.avito_to_tfrecords"))
