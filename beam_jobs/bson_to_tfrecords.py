"""Cdiscount BSON (train.bson, test.bson) to sharded `cdiscount_product` TFRecords.

    python -m beam_jobs.bson_to_tfrecords --input train.bson --input test.bson \
        --output data/cdiscount --categories category_names.csv

How it reads one huge file in parallel: the launcher walks the documents' length
prefixes once (`bson_index`), cuts the file into byte ranges of whole documents,
and Beam workers read and decode those ranges independently. Byte range i of an
input becomes shard i of each split, so no image ever goes through a shuffle.

Damaged inputs: the walk resynchronises after a damaged stretch (stray bytes, a
bad length prefix, a truncated tail) on the next document that starts with `_id`
and decodes; each stretch is one dead letter (`_id` null, with its `length`) and
one input record. A range carries the stretches inside it, so workers step over
them exactly as the walk did (the index itself stays with the launcher: shipping
7M offsets in the pipeline graph would pass Dataflow's limit on a job's size).

Two passes over the ranges: the first decodes and validates every document, JPEGs
included, as training will read them (dead letters), and emits each valid
product's _id, position and category. Products are grouped by _id: the first
occurrence (lowest input index, then offset; within or across inputs) is kept,
later ones are dead letters "duplicate _id N (first at FILE:OFFSET)". Only valid
products count: a copy rejected for its own fault (say, no images) is not the
"first". The kept labelled products' (category, rank) pairs set each category's
validation threshold. The second pass writes each product to train, val or test,
skipping the positions the first pass rejected (a side input keyed by range:
rejections are rare), so no picture is decoded twice. Reading twice is cheaper
than shuffling the images to wherever the split is decided, locally and on
Dataflow alike.

Counters (namespace bson_to_tfrecords): documents_read, written, rejected,
duplicates, damaged_stretches.
"""

import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import common
from beam_jobs.bson_index import Gap, build_index, file_size, gaps_in, read_documents, split_ranges
from beam_jobs.cdiscount_products import (Product, classes_rows, decode_product, product_id_of,
                                          read_categories, split_rank, validation_count)
from tfrecords import ArgumentParser, UserError, cdiscount_product
from tfrecords.manifest import COMPRESSIONS, join, write_classes

NAMESPACE = "bson_to_tfrecords"
# ~128 MB per shard: big enough for fast sequential reads, small enough to spread
# a 58 GB train.bson over a few hundred Dataflow workers.
TARGET_SHARD_BYTES = 128 << 20


class Chunk(NamedTuple):
    """A byte range of whole documents in one input file, and the damaged stretches inside it."""

    input_index: int
    path: str
    chunk_index: int
    start: int
    end: int
    gaps: Tuple[Tuple[int, int], ...] = ()


class CategoryStats(NamedTuple):
    products: int
    val: int
    # Products of the category whose split_rank is <= threshold go to val.
    threshold: Optional[tuple]


def _documents(chunk: Chunk):
    return read_documents(chunk.path, chunk.start, chunk.end, chunk.gaps)


def _is_known(product: Product, known_categories) -> bool:
    return product.category_id is None or known_categories is None or product.category_id in known_categories


class _ScanChunk(beam.DoFn):
    """Validates every document; valid products go on to the _id grouping, keyed by _id."""

    REJECTED = "rejected"
    SKIPPED = "skipped"

    def __init__(self, known_categories: Optional[frozenset]):
        self._known = known_categories
        self._read = Metrics.counter(NAMESPACE, "documents_read")

    def process(self, chunk: Chunk):
        for offset, raw in _documents(chunk):
            self._read.inc()
            product = decode_product(raw)
            if isinstance(product, str):
                yield from self._reject(chunk, offset, product, product_id_of(raw))
            elif not _is_known(product, self._known):
                yield from self._reject(chunk, offset, f"category_id {product.category_id} is not in the "
                                        "categories file", product.product_id)
            else:
                yield product.product_id, (chunk.input_index, offset, chunk.chunk_index, chunk.path,
                                           product.category_id)

    def _reject(self, chunk: Chunk, offset: int, reason: str, product_id: Optional[int]):
        yield beam.pvalue.TaggedOutput(self.REJECTED, common.rejection(chunk.path, offset, reason, _id=product_id))
        yield beam.pvalue.TaggedOutput(self.SKIPPED, _skip(chunk.input_index, chunk.chunk_index, offset))


def _skip(input_index: int, chunk_index: int, offset: int):
    """A position the write pass must not write, keyed by its chunk (the side input's lookup key)."""
    return (input_index, chunk_index), offset


class _KeepFirstOfEachId(beam.DoFn):
    """(_id, occurrences) -> (category_id, split_rank) of the first; later ones are dead letters."""

    def __init__(self, seed: int):
        self._seed = seed
        self._duplicates = Metrics.counter(NAMESPACE, "duplicates")

    def process(self, element):
        product_id, occurrences = element
        first, *later = sorted(occurrences, key=lambda o: (o[0], o[1]))
        first_input, first_offset, _, first_path, category_id = first
        if category_id is not None:
            # The rank is computed here, not shipped: the shuffle by _id carries every product.
            yield category_id, split_rank(self._seed, product_id, first_input, first_offset)
        for input_index, offset, chunk_index, path, _ in later:
            self._duplicates.inc()
            yield beam.pvalue.TaggedOutput(_ScanChunk.REJECTED, common.rejection(
                path, offset, f"duplicate _id {product_id} (first at {first_path}:{first_offset})", _id=product_id))
            yield beam.pvalue.TaggedOutput(_ScanChunk.SKIPPED, _skip(input_index, chunk_index, offset))


class ScanProducts(beam.PTransform):
    """Chunks -> (category_id, split_rank) per labelled product to write, dead letters, skipped positions.

    Returns three PCollections: `labelled` (first occurrences of each _id only),
    `rejected` (dead letters: invalid documents, unknown categories, duplicate
    _ids) and `skipped` (((input_index, chunk_index), offset) of each rejected
    document, for `WriteShards`).
    """

    def __init__(self, seed: int, known_categories: Optional[frozenset] = None):
        super().__init__()
        self._seed = seed
        self._known = known_categories

    def expand(self, chunks):
        scanned = chunks | "Validate" >> beam.ParDo(_ScanChunk(self._known)).with_outputs(
            _ScanChunk.REJECTED, _ScanChunk.SKIPPED, main="products")
        kept = (scanned.products
                | "ById" >> beam.GroupByKey()
                | "KeepFirst" >> beam.ParDo(_KeepFirstOfEachId(self._seed)).with_outputs(
                    _ScanChunk.REJECTED, _ScanChunk.SKIPPED, main="labelled"))
        rejected = (scanned[_ScanChunk.REJECTED], kept[_ScanChunk.REJECTED]) | "Rejected" >> beam.Flatten()
        skipped = (scanned[_ScanChunk.SKIPPED], kept[_ScanChunk.SKIPPED]) | "Skipped" >> beam.Flatten()
        return kept.labelled, rejected, skipped


def category_stats(category_id: int, ranks, fraction: float):
    ranks = sorted(ranks)
    val = validation_count(len(ranks), fraction)
    return category_id, CategoryStats(len(ranks), val, ranks[val - 1] if val else None)


class ChooseValidation(beam.PTransform):
    """(category_id, rank) -> (category_id, CategoryStats): round(fraction * n) per category in val."""

    def __init__(self, fraction: float):
        super().__init__()
        self._fraction = fraction

    def expand(self, labelled):
        return (labelled
                | "ByCategory" >> beam.GroupByKey()
                | "Threshold" >> beam.Map(lambda kv, f: category_stats(kv[0], kv[1], f), self._fraction))


class _WriteChunk(beam.DoFn):
    def __init__(self, output: str, seed: int, compression: str, categories: Optional[List[int]]):
        self._output = output
        self._seed = seed
        self._options = tf.io.TFRecordOptions(compression_type=COMPRESSIONS[compression])
        self._categories = categories
        self._written = Metrics.counter(NAMESPACE, "written")

    def process(self, chunk: Chunk, stats: Dict[int, CategoryStats], skipped):
        labels = {c: i for i, c in enumerate(self._categories or sorted(stats))}
        # Rejected by ScanProducts (invalid, unknown category, duplicate _id): already dead letters.
        skip = set(skipped[(chunk.input_index, chunk.chunk_index)])
        writers, counts = {}, {}
        try:
            for offset, raw in _documents(chunk):
                if offset in skip:
                    continue
                # The scan pass decoded these pictures already; decoding them again would double the cost.
                product = decode_product(raw, check_pictures=False)
                if isinstance(product, str):
                    raise ValueError(f"{chunk.path}:{offset} passed validation in the first pass but not in "
                                     f"the second ({product}): has the file changed during the conversion?")
                split, record = self._encode(product, chunk, offset, stats, labels)
                if split not in writers:
                    writers[split] = tf.io.TFRecordWriter(self._path(chunk, split), self._options)
                    counts[split] = 0
                writers[split].write(record)
                counts[split] += 1
                self._written.inc()
        finally:
            for writer in writers.values():
                writer.close()
        for split, records in counts.items():
            yield {"split": split, "path": self._path(chunk, split), "records": records,
                   "order": [chunk.input_index, chunk.chunk_index]}

    def _encode(self, product: Product, chunk: Chunk, offset: int, stats, labels):
        if product.category_id is None:
            return "test", cdiscount_product.encode(product.product_id, product.images)
        threshold = stats[product.category_id].threshold
        rank = split_rank(self._seed, product.product_id, chunk.input_index, offset)
        split = "val" if threshold is not None and tuple(rank) <= tuple(threshold) else "train"
        return split, cdiscount_product.encode(product.product_id, product.images,
                                               product.category_id, labels[product.category_id])

    def _path(self, chunk: Chunk, split: str) -> str:
        return common.tmp_path(self._output, f"{split}-{chunk.input_index:03d}-{chunk.chunk_index:05d}.tfrecord")


class WriteShards(beam.PTransform):
    """Chunks -> one temporary shard per (chunk, split); yields the shards' descriptions.

    `skipped` is ScanProducts' third output: the positions not to write.
    """

    def __init__(self, output: str, stats, skipped, seed: int, compression: str = "none",
                 categories: Optional[List[int]] = None):
        super().__init__()
        self._output, self._stats, self._skipped, self._seed = output, stats, skipped, seed
        self._compression, self._categories = compression, categories

    def expand(self, chunks):
        return chunks | beam.ParDo(_WriteChunk(self._output, self._seed, self._compression, self._categories),
                                   stats=beam.pvalue.AsDict(self._stats),
                                   skipped=beam.pvalue.AsMultiMap(self._skipped))


def plan_chunks(paths: List[str], indexes: List[np.ndarray], num_shards: Optional[int],
                gaps: Optional[Sequence[Sequence[Gap]]] = None) -> List[Chunk]:
    """Cuts every input into byte ranges; `num_shards` ranges in all, shared by size.

    `gaps[i]` are input i's damaged stretches from `build_index`; each range carries those inside it.
    """
    gaps = gaps or [[] for _ in paths]
    sizes = [int(index[:, 1].sum()) for index in indexes]
    total = max(sum(sizes), 1)
    num_shards = num_shards or max(1, -(-total // TARGET_SHARD_BYTES))
    chunks = []
    for i, (path, index, size) in enumerate(zip(paths, indexes, sizes)):
        parts = max(1, round(num_shards * size / total))
        chunks += [Chunk(i, path, k, a, b, gaps_in(gaps[i], a, b))
                   for k, (a, b) in enumerate(split_ranges(index, parts))]
    return chunks


def _parser(prog: str) -> ArgumentParser:
    parser = common.job_parser(
        prog, "Convert Cdiscount BSON files to sharded cdiscount_product TFRecords.")
    parser.add_argument("--input", action="append", required=True, metavar="BSON",
                        help="a BSON file (local or gs://); repeat for train.bson and test.bson")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--categories", help="category_names.csv: the class list, with its level names")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="fraction of each category's labelled products held out (default 0.1)")
    parser.add_argument("--num-shards", type=int, help="byte ranges to cut the inputs into; each split gets "
                        "at most this many shards (default: one per ~128 MB)")
    parser.add_argument("--compression", choices=sorted(COMPRESSIONS), default="none")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def _index_inputs(paths: List[str], output: str) -> Tuple[List[np.ndarray], List[List[Gap]]]:
    """Builds and saves each input's offset index; returns the indexes and the damaged stretches."""
    basenames = [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]
    if len(set(basenames)) != len(basenames):
        raise UserError(f"inputs must have distinct file names, got {basenames}")
    indexes, gaps = [], []
    for path, basename in zip(paths, basenames):
        index, damaged = build_index(path)
        index_path = join(output, "index", basename + ".index.npy")
        with FileSystems.create(index_path + ".tmp") as f:
            np.save(f, index)
        FileSystems.rename([index_path + ".tmp"], [index_path])
        indexes.append(index)
        gaps.append(damaged)
    return indexes, gaps


def run(argv: Optional[List[str]] = None, prog: str = "python -m beam_jobs.bson_to_tfrecords") -> Dict:
    """Runs the conversion; returns the manifest. Raises UserError for bad flags or inputs."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pipeline_args = common.parse_args(_parser(prog), argv)
    if not 0 < args.val_fraction < 1:
        raise UserError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if args.num_shards is not None and args.num_shards < 1:
        raise UserError(f"--num-shards must be at least 1, got {args.num_shards}")
    common.check_inputs(args.input)
    classes = read_categories(args.categories) if args.categories else None
    options = common.pipeline_options(pipeline_args)
    common.prepare_output(args.output, args.overwrite, args.input)

    indexes, gaps = _index_inputs(args.input, args.output)
    chunks = plan_chunks(args.input, indexes, args.num_shards, gaps)
    # Each damaged stretch is one input record, rejected.
    damaged = [common.rejection(path, g.offset, g.reason, _id=None, length=g.length)
               for path, stretches in zip(args.input, gaps) for g in stretches]
    known = [row["category_id"] for row in classes] if classes else None
    with beam.Pipeline(options=options) as p:
        ranges = p | "Chunks" >> beam.Create(chunks, reshuffle=False) | "Spread" >> beam.Reshuffle()
        labelled, rejected, skipped = ranges | "Scan" >> ScanProducts(args.seed, frozenset(known) if known else None)
        stats = labelled | "Split" >> ChooseValidation(args.val_fraction)
        shards = ranges | "Write" >> WriteShards(args.output, stats, skipped, args.seed, args.compression, known)
        damaged_stretches = (p | "DamagedStretches" >> beam.Create(damaged)
                             | "CountDamaged" >> beam.Map(common.CountAs(NAMESPACE, "damaged_stretches")))
        all_rejected = ((rejected, damaged_stretches) | "AllRejected" >> beam.Flatten()
                        | "CountRejected" >> beam.Map(common.CountAs(NAMESPACE, "rejected")))
        _ = all_rejected | "WriteRejected" >> common.WriteReport(args.output, "rejected")
        _ = shards | "WriteShardList" >> common.WriteReport(args.output, "shards")
        _ = (stats | "StatsToDict" >> beam.MapTuple(lambda c, s: {"category_id": c, **s._asdict()})
             | "WriteStats" >> common.WriteReport(args.output, "categories"))

    stats = {r["category_id"]: r for r in common.read_report(args.output, "categories")}
    classes = classes or classes_rows(list(stats))
    write_classes(args.output, classes)
    manifest = {
        "kind": cdiscount_product.KIND,
        "schema_version": cdiscount_product.SCHEMA_VERSION,
        "input_records": int(sum(len(index) for index in indexes)) + len(damaged),
        "num_classes": len(classes),
        "inputs": [{"path": p, "documents": int(len(i)), "damaged_stretches": len(g), "bytes": file_size(p)}
                   for p, i, g in zip(args.input, indexes, gaps)],
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "command": common.command_line(prog, argv),
    }
    return common.finalize(args.output, manifest, common.read_report(args.output, "shards"),
                           common.read_report(args.output, "rejected"), args.compression)


if __name__ == "__main__":
    sys.exit(common.run_installed("beam_jobs.bson_to_tfrecords"))
