"""YouTube-8M frame-level TFRecords (official or MediaPipe) to sharded `yt8m_frame` TFRecords.

    python -m beam_jobs.frames_to_tfrecords --input 'gs://BUCKET/frame/train*.tfrecord' \
        --input 'gs://BUCKET/frame/validate*.tfrecord' --output gs://BUCKET/yt8m \
        --vocabulary segment_label_ids.csv --classes vocabulary.csv --runner DataflowRunner ...

What it does to the records:
- reshards: each split's input files, sorted by name, are cut into `--num-shards`
  contiguous groups (default: one per ~256 MB of input); one worker reads one group in
  order and writes one shard, so frames never go through a shuffle and the same inputs
  give byte-identical shards;
- filters and remaps (`--vocabulary CSV` with an `Index` column, e.g. the 1,000 classes
  with segment ratings): labelled videos with no label in it are dropped and counted in
  the manifest's `filtered`; labels and segment labels become their place in the sorted
  vocabulary; ratings of other labels are dropped; videos without labels (test) are kept;
- converts MediaPipe's feature-extractor output (`--format mediapipe`: float features
  `RGB/feature/floats`, `AUDIO/feature/floats`) to the official quantized format;
- sends records that cannot be read or are malformed to `rejected.jsonl`.

Classes: with `--vocabulary`, `num_classes` is its size. Without it, labels keep their ids
and `num_classes` is `max label + 1` over the written data, unless `--classes
vocabulary.csv` (the official file) is given: then it is `max Index + 1`, labels outside
the file are rejected, and converting one split alone still gives the full class count.
`classes.csv` maps class_index to the original label id (`category_id`), with the
official names where a file has them. Ids kept as class indexes are bounded by
`MAX_LABEL_ID` (99,999; the largest YouTube-8M vocabulary has 4,716 classes): without
`--vocabulary`, a record with a larger label or segment label is a dead letter (the
rest of the data converts; the reason says to pass `--vocabulary`), and a `--classes`
file listing a larger Index is an error before the pipeline starts. One stray id of
2**40 would otherwise ask for 2**40 classes.

Damaged inputs cost only the records they touch (`yt8m_frames.read_records`): a record
whose length or data checksum fails, stray bytes, or a truncated tail is one dead letter
for the whole damaged stretch (`offset` and `length` in bytes), and reading resumes at
the next record whose checksums hold. A `.gz` input that is not gzip is one dead letter;
one whose deflate stream breaks keeps every record before the break and is one dead
letter for the rest (`length` null: deflate cannot resynchronise). A dead letter's
`offset` is a byte offset in the input (in the uncompressed stream for `.gz`), also for
records that are framed well but do not parse; a MediaPipe `.pb` file is offset 0.

An official record that passes unchanged (no `--vocabulary`) is copied byte for byte;
remapped and converted records are rebuilt with `yt8m_frame.encode` (deterministic bytes).
"""

import posixpath
import re
import sys
from typing import Dict, List, Optional

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import common
from beam_jobs.yt8m_frames import (FILTERED, FORMATS, MAX_LABEL_ID, REJECTED, Damaged, InputFile, Invalid,
                                   LabelRule, Outcome, ShardGroup, auto_split, classes_rows, convert_record,
                                   plan_groups, read_index_csv, read_records)
from tfrecords import ArgumentParser, UserError, yt8m_frame
from tfrecords.manifest import COMPRESSIONS, write_classes

NAMESPACE = "frames_to_tfrecords"
# ~256 MB of input per shard: big enough for long sequential reads in training, small
# enough to spread the ~1.5 TB frame-level dataset over thousands of Dataflow workers.
TARGET_SHARD_BYTES = 256 << 20
SPLIT_ORDER = ("train", "validate", "test")
_SPLIT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class _ConvertGroup(beam.DoFn):
    REJECTED = "rejected"

    def __init__(self, output: str, fmt: str, rule: LabelRule, compression: str):
        self._output = output
        self._format = fmt
        self._rule = rule
        self._options = tf.io.TFRecordOptions(compression_type=COMPRESSIONS[compression])
        self._read = Metrics.counter(NAMESPACE, "records_read")
        self._written = Metrics.counter(NAMESPACE, "written")
        self._filtered = Metrics.counter(NAMESPACE, "filtered")

    def process(self, group: ShardGroup):
        path = common.tmp_path(self._output, f"{group.split}-{group.index:05d}.tfrecord")
        writer, read, written, filtered, max_label = None, 0, 0, 0, -1
        try:
            for file in group.files:
                for offset, raw in read_records(file, self._format):
                    read += 1
                    self._read.inc()
                    # A damaged stretch of the file (or a file that cannot be read) is one dead letter.
                    outcome = (Outcome(REJECTED, reason=str(raw)) if isinstance(raw, Invalid)
                               else convert_record(raw, self._format, self._rule))
                    if outcome.status == REJECTED:
                        extra = {"length": raw.length} if isinstance(raw, Damaged) else {}
                        yield beam.pvalue.TaggedOutput(self.REJECTED, common.rejection(
                            file, offset, outcome.reason, id=outcome.video_id, **extra))
                    elif outcome.status == FILTERED:
                        filtered += 1
                        self._filtered.inc()
                    else:
                        if writer is None:
                            # Nothing else may have created _tmp/ yet (a no-op on object stores).
                            tf.io.gfile.makedirs(posixpath.dirname(path))
                            writer = tf.io.TFRecordWriter(path, self._options)
                        writer.write(outcome.record)
                        written += 1
                        self._written.inc()
                        max_label = max(max_label, outcome.max_label)
        finally:
            if writer is not None:
                writer.close()
        # One report per group, even an empty one: it carries the read and filtered counts.
        yield {"split": group.split, "path": path if written else None, "records": written,
               "order": group.index, "read": read, "filtered": filtered, "max_label": max_label}


class ConvertGroups(beam.PTransform):
    """Shard groups -> (group reports, dead letters); writes one temporary shard per group.

    A group report is a dict: `split`, `path` (the temporary shard, None when nothing was
    written), `records` (written), `order`, `read`, `filtered` and `max_label`.

    Args:
        output: the output directory (shards go to `output/_tmp/`).
        fmt: "official" or "mediapipe".
        rule: what to do with label ids (`LabelRule`).
        compression: "none" or "gzip".

    Example:

    >>> reports, rejected = groups | ConvertGroups("out", "official", LabelRule.from_vocabulary([3, 7]))
    """

    def __init__(self, output: str, fmt: str = "official", rule: LabelRule = LabelRule(),
                 compression: str = "none"):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        self._output, self._format, self._rule, self._compression = output, fmt, rule, compression

    def expand(self, groups):
        result = groups | beam.ParDo(_ConvertGroup(self._output, self._format, self._rule, self._compression)
                                     ).with_outputs(_ConvertGroup.REJECTED, main="reports")
        return result.reports, result[_ConvertGroup.REJECTED]


def match_inputs(patterns: List[str], split: str) -> List[InputFile]:
    """Expands the glob patterns (local or gs://) into sorted, distinct input files with their splits."""
    files: Dict[str, InputFile] = {}
    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except (BeamIOError, ValueError) as e:  # an unknown scheme, a bucket we cannot list
            raise UserError(f"cannot list {pattern}: {e}") from None
        if not matched:
            raise UserError(f"no input matches {pattern}")
        for metadata in matched:
            path = metadata.path
            if "://" not in path and posixpath.isdir(path):
                raise UserError(f"input {path} is a directory: pass a pattern like {path.rstrip('/')}/*.tfrecord")
            files[path] = InputFile(path, int(metadata.size_in_bytes), auto_split(path) if split == "auto" else split)
    return [files[p] for p in sorted(files)]


def label_rule(vocabulary: Optional[Dict[int, Dict]], classes: Optional[Dict[int, Dict]]) -> LabelRule:
    """--vocabulary remaps; without it, --classes restricts the label ids (see the module doc)."""
    if vocabulary is not None:
        return LabelRule.from_vocabulary(list(vocabulary))
    return LabelRule(known=frozenset(classes) if classes is not None else None)


def _classes(vocabulary, classes, max_label: int) -> List[Dict]:
    names = {**(vocabulary or {}), **(classes or {})}
    if vocabulary is not None:
        return classes_rows(list(vocabulary), names)
    num_classes = max(classes) + 1 if classes is not None else max_label + 1
    # Labels keep their ids, so class_index == label id: one row for every id below num_classes.
    return classes_rows(list(range(num_classes)), names)


def _parser(prog: str) -> ArgumentParser:
    parser = common.job_parser(
        prog, "Reshard, filter, remap or convert YouTube-8M frame-level TFRecords (official or MediaPipe) to "
        "sharded yt8m_frame TFRecords.")
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN",
                        help="input files, a glob (local or gs://, quote it); repeat for more")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--format", choices=FORMATS, default="official",
                        help="official: YouTube-8M frame-level records; mediapipe: MediaPipe's "
                        "feature-extractor output (TFRecord files, or one record per *.pb file)")
    parser.add_argument("--split", default="auto", help="auto (default): from each file name's start "
                        f"({', '.join(SPLIT_ORDER)}); otherwise the split every input goes to")
    parser.add_argument("--vocabulary", metavar="CSV", help="a CSV with an Index column: keep only videos "
                        "with a label in it and renumber labels by their place in it (sorted)")
    parser.add_argument("--classes", metavar="CSV", help="the official vocabulary.csv: class names for "
                        "classes.csv; without --vocabulary also num_classes (max Index + 1), and labels "
                        "outside it are rejected")
    parser.add_argument("--num-shards", type=int, help="shards per split, each a contiguous run of whole "
                        "input files (default: one per ~256 MB of input)")
    parser.add_argument("--compression", choices=sorted(COMPRESSIONS), default="none")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def run(argv: Optional[List[str]] = None, prog: str = "python -m beam_jobs.frames_to_tfrecords") -> Dict:
    """Runs the conversion; returns the manifest. Raises UserError for bad flags or inputs.

    Example:

    >>> manifest = run(["--input", "raw/validate*.tfrecord", "--output", "data/segments",
    ...                 "--vocabulary", "raw/segment_vocabulary.csv"])
    >>> manifest["num_classes"], manifest["filtered"]
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pipeline_args = common.parse_args(_parser(prog), argv)
    if args.num_shards is not None and args.num_shards < 1:
        raise UserError(f"--num-shards must be at least 1, got {args.num_shards}")
    if args.split != "auto" and not _SPLIT_NAME.match(args.split):
        raise UserError(f"--split must be auto or a name of letters, digits and _, got {args.split!r}")
    files = match_inputs(args.input, args.split)
    vocabulary = read_index_csv(args.vocabulary) if args.vocabulary else None
    classes = read_index_csv(args.classes) if args.classes else None
    if vocabulary is None and classes is not None and max(classes) > MAX_LABEL_ID:
        # Checked before the pipeline runs: num_classes would be max Index + 1.
        raise UserError(f"{args.classes} lists Index {max(classes)}, above {MAX_LABEL_ID}, the largest label "
                        "id kept as a class index: pass it as --vocabulary to renumber the labels")
    options = common.pipeline_options(pipeline_args)
    common.prepare_output(args.output, args.overwrite, [f.path for f in files])

    groups = plan_groups(files, args.num_shards, TARGET_SHARD_BYTES)
    with beam.Pipeline(options=options) as p:
        reports, rejected = (p | "Groups" >> beam.Create(groups, reshuffle=False) | "Spread" >> beam.Reshuffle()
                             | "Convert" >> ConvertGroups(args.output, args.format, label_rule(vocabulary, classes),
                                                          args.compression))
        _ = (rejected | "CountRejected" >> beam.Map(common.CountAs(NAMESPACE, "rejected"))
             | "WriteRejected" >> common.WriteReport(args.output, "rejected"))
        _ = reports | "WriteGroups" >> common.WriteReport(args.output, "groups")

    reports = common.read_report(args.output, "groups")
    rows = _classes(vocabulary, classes, max((r["max_label"] for r in reports), default=-1))
    write_classes(args.output, rows)
    manifest = {
        "kind": yt8m_frame.KIND,
        "schema_version": yt8m_frame.SCHEMA_VERSION,
        "input_records": sum(r["read"] for r in reports),
        "filtered": sum(r["filtered"] for r in reports),
        "num_classes": len(rows),
        "format": args.format,
        "vocabulary": args.vocabulary,
        "classes_file": args.classes,
        "inputs": [f._asdict() for f in files],
        "command": common.command_line(prog, argv),
    }
    shards = [r for r in reports if r["path"] is not None]
    return common.finalize(args.output, manifest, shards, common.read_report(args.output, "rejected"),
                           args.compression, split_order=SPLIT_ORDER)


if __name__ == "__main__":
    sys.exit(common.run_installed("beam_jobs.frames_to_tfrecords"))
