"""SIIM-ISIC melanoma JPEGs and CSVs (2020, optionally ISIC 2019) to `melanoma_image` TFRecords.

    python -m beam_jobs.melanoma_to_tfrecords --csv train.csv --images jpeg/train \
        --csv test.csv --images jpeg/test --isic2019 isic2019 --output data/melanoma-512 \
        [--image-size 512] [--folds 5] [--shards-per-fold 3] [--runner DataflowRunner ...]

The output is Chris Deotte's layout (`melanoma_image` keeps his keys byte for byte), so
notebooks written for his `melanoma-512x512` datasets read it unchanged:

    train00-2182.tfrec ...    `train%.2i-%i.tfrec` % (shard, records): F*S shards, shard i in
                              fold i // S (`--folds F --shards-per-fold S`)
    test00-687.tfrec ...      test images, sorted by name, ~2000 per shard (or --test-shards)
    duplicate00-12.tfrec      training images flagged as near-duplicates (fold -1)
    train.csv                 Deotte's processed CSV: the 2020 columns (2019 rows filled from
                              the 2019 CSVs), tfrecord (the shard, -1 for a duplicate), width,
                              height, and ours: source (2020/2019), duplicate_of, fold
    sex.csv  anatom_site_general_challenge.csv  diagnosis.csv   code,value (fixed, sorted)
    classes.csv               class_index,category_id,name: the 9 classes
    rejected.jsonl            one line per row not converted: file, offset (the CSV line),
                              image_name, reason
    manifest.json             written last

Codes: sex, site and diagnosis are their value's place in a fixed sorted vocabulary
(`melanoma_images.VOCABULARIES`: `melanoma_image.SEXES`, `SITES`, and every 2020 diagnosis
string and 2019 class name), so a code means the same in every converted dataset; 2019
values map onto 2020's words (see `beam_jobs.melanoma_images`). patient_id is the place of
the patient's id among the sorted ids of the valid rows (2019 images: -1, each its own
group); a missing value is -1.

How it runs. The launcher reads and validates the CSVs (small: 69k rows for all three),
lists the image folders, gives the patients their codes, and writes one JSON line per input row to
`OUTPUT/_tmp/rows.jsonl` (a file, not `beam.Create`: 58k rows in the job graph would pass
Dataflow's limit on a job's size). The pipeline then:

1. `ConvertImages`: one element per image, spread by a Reshuffle, so Dataflow spreads the
   expensive part (decode, crop, resize, re-encode, hash) over its workers; each image is
   decoded once. Rows the launcher rejected and images that do not decode become dead letters.
2. `PlanDataset`: every image's signature (~1.3 KB, no pixels) combined into one list, where
   the near-duplicates are grouped and the folds assigned (`melanoma_images.plan_dataset`):
   about 15 s for 69k images, on one worker.
3. `WriteShards`: the plan as a side input gives each image its split, shard and fold; the
   records are grouped by shard, sorted by image_name and written to `_tmp/`. The launcher
   renames them to Deotte's names (which hold the record count, known only then).

Same inputs and flags, same bytes: JPEG encoding, record serialization, the plan (sorted
inputs, seeded) and the order within a shard do not depend on workers or timing.
`input_records` (rows of the 2020 CSVs and the 2019 ground truth) == written (all splits,
duplicates included) + rejected; images no row names are counted as `unlisted`.

Counters (namespace melanoma_to_tfrecords): rows_read, written, rejected, duplicates.
"""

import csv
import io
import json
import posixpath
import sys
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_jobs import common
from beam_jobs.melanoma_images import (DEFAULT_MAX_DISTANCE, DUPLICATE, MIN_CORRELATION, SOURCE_NAMES, TEST, TRAIN,
                                       TRAIN_COLUMNS, VOCABULARIES, Assignment, ConvertedImage,
                                       Fingerprint, Plan, Row, attach_images, convert_image, paths_2019,
                                       patient_codes, plan_dataset, read_2019, read_2020, reject_repeated_names,
                                       row_element)
from tfrecords import ArgumentParser, UserError, melanoma_image
from tfrecords.manifest import REJECTED, join, write_classes, write_manifest, write_text_atomic

NAMESPACE = "melanoma_to_tfrecords"
ROWS = "rows.jsonl"
TRAIN_CSV = "train.csv"
SPLIT_ORDER = (TRAIN, TEST, DUPLICATE)
# Deotte's processed train.csv, then ours.
TRAIN_CSV_COLUMNS = (*TRAIN_COLUMNS, "tfrecord", "width", "height", "source", "duplicate_of", "fold")


class Converted(NamedTuple):
    """A converted image on its way to a shard: its pipeline row (codes), the image, the file's size."""

    row: Dict
    image: ConvertedImage
    file_size: int


def _reject(row: Dict, reason: str):
    return beam.pvalue.TaggedOutput(_ConvertImage.REJECTED, common.rejection(
        row["file"], row["offset"], reason, image_name=row["image_name"]))


class _ConvertImage(beam.DoFn):
    REJECTED = "rejected"

    def __init__(self, image_size: int, quality: int):
        self._image_size = image_size
        self._quality = quality
        self._read = Metrics.counter(NAMESPACE, "rows_read")

    def process(self, row: Dict):
        self._read.inc()
        if row["reason"] is not None:  # rejected by the launcher (CSV values, repeated name, missing file)
            yield _reject(row, row["reason"])
            return
        try:
            with FileSystems.open(row["image_path"]) as f:
                data = f.read()
        except (OSError, BeamIOError) as e:  # removed or unreadable since the launcher listed it
            yield _reject(row, f"cannot read image {row['image_path']}: {e}")
            return
        converted = convert_image(data, self._image_size, self._quality)
        if isinstance(converted, str):
            yield _reject(row, converted)
        else:
            yield Converted(row, converted, len(data))


class ConvertImages(beam.PTransform):
    """Pipeline rows (`melanoma_images.row_element` dicts) -> (Converted images, dead letters).

    Args:
        image_size: side of the square output JPEG.
        quality: its JPEG quality.

    Example:

    >>> converted, rejected = rows | ConvertImages(image_size=512, quality=95)
    """

    def __init__(self, image_size: int = 512, quality: int = 95):
        super().__init__()
        self._image_size, self._quality = image_size, quality

    def expand(self, rows):
        result = rows | beam.ParDo(_ConvertImage(self._image_size, self._quality)).with_outputs(
            _ConvertImage.REJECTED, main="converted")
        return result.converted, result[_ConvertImage.REJECTED]


def fingerprint(converted: Converted) -> Fingerprint:
    """What planning needs of a converted image: no pixels, so all of them fit in one list."""
    row, image = converted.row, converted.image
    return Fingerprint(row["image_name"], row["split"], row["source"], row["patient_id"], row["target"],
                       image.signature, image.width, image.height)


class _Plan:
    def __init__(self, folds: int, shards_per_fold: int, seed: int, test_shards: Optional[int], max_distance: int):
        self._args = dict(folds=folds, shards_per_fold=shards_per_fold, seed=seed, test_shards=test_shards,
                          max_distance=max_distance)
        self._duplicates = Metrics.counter(NAMESPACE, "duplicates")

    def __call__(self, fingerprints: List[Fingerprint]) -> Plan:
        plan = plan_dataset(fingerprints, **self._args)
        self._duplicates.inc(plan.duplicates)
        return plan


class PlanDataset(beam.PTransform):
    """Converted images -> a single `melanoma_images.Plan`: duplicates found, folds and shards assigned.

    Args:
        folds, shards_per_fold: the training split's F*S shards (shard i in fold i // S).
        seed: of the fold assignment.
        test_shards: shards of the test split (default: one per ~2000 images).
        max_distance: hash bits two copies of a picture may differ in.

    Example:

    >>> plan = converted | PlanDataset(folds=5, shards_per_fold=3, seed=0)
    >>> shards = converted | WriteShards("out", plan)
    """

    def __init__(self, folds: int = 5, shards_per_fold: int = 3, seed: int = 0, test_shards: Optional[int] = None,
                 max_distance: int = DEFAULT_MAX_DISTANCE):
        super().__init__()
        self._plan = _Plan(folds, shards_per_fold, seed, test_shards, max_distance)

    def expand(self, converted):
        return (converted
                | "Fingerprints" >> beam.Map(fingerprint)
                | "All" >> beam.combiners.ToList()
                | "Plan" >> beam.Map(self._plan))


def encode_record(converted: Converted, assignment: Assignment) -> bytes:
    """The `melanoma_image` record of a converted image in its planned place."""
    row, image = converted.row, converted.image
    return melanoma_image.encode(
        image.jpeg, row["image_name"], patient_id=row["patient_id"], sex=row["sex"], age_approx=row["age_approx"],
        site=row["site"], diagnosis=row["diagnosis"], target=row["target"], class_index=row["class_index"],
        width=image.width, height=image.height, file_size=converted.file_size,
        patient_images=assignment.patient_images, source=row["source"], fold=assignment.fold)


class _KeyByShard(beam.DoFn):
    LISTING = "listing"

    def process(self, converted: Converted, plan: Plan):
        name = converted.row["image_name"]
        assignment = plan.assignments[name]
        yield (assignment.split, assignment.shard), (name, encode_record(converted, assignment))
        yield beam.pvalue.TaggedOutput(self.LISTING, {
            "image_name": name, "split": assignment.split, "shard": assignment.shard, "fold": assignment.fold,
            "duplicate_of": assignment.duplicate_of, "width": converted.image.width,
            "height": converted.image.height})


def shard_tmp_path(output: str, split: str, shard: int) -> str:
    return common.tmp_path(output, f"{split}-{shard:05d}.tfrec")


class _WriteShard(beam.DoFn):
    def __init__(self, output: str):
        self._output = output
        self._written = Metrics.counter(NAMESPACE, "written")

    def process(self, element):
        (split, shard), records = element
        # Sorted by image_name: the same shard bytes whatever order the records arrived in.
        records = sorted(records)
        path = shard_tmp_path(self._output, split, shard)
        tf.io.gfile.makedirs(posixpath.dirname(path))  # a no-op on object stores
        with tf.io.TFRecordWriter(path) as writer:
            for _, record in records:
                writer.write(record)
                self._written.inc()
        yield {"split": split, "shard": shard, "records": len(records), "path": path}


class WriteShards(beam.PTransform):
    """Converted images -> (shard reports, image listing); writes `_tmp/{split}-{shard:05d}.tfrec`.

    A shard report is a dict: split, shard, records, path (temporary). The listing has a
    dict per image: image_name, split, shard, fold, duplicate_of, width, height.

    Args:
        output: the output directory.
        plan: PlanDataset's output (a side input).

    Example:

    >>> reports, listing = converted | WriteShards("out", converted | PlanDataset())
    """

    def __init__(self, output: str, plan):
        super().__init__()
        self._output, self._plan = output, plan

    def expand(self, converted):
        keyed = converted | "KeyByShard" >> beam.ParDo(_KeyByShard(), plan=beam.pvalue.AsSingleton(self._plan)
                                                       ).with_outputs(_KeyByShard.LISTING, main="records")
        reports = (keyed.records
                   | "ByShard" >> beam.GroupByKey()
                   | "Write" >> beam.ParDo(_WriteShard(self._output)))
        return reports, keyed[_KeyByShard.LISTING]


# -------------------------------------------------------------------------------------- launcher


class Inputs(NamedTuple):
    """Every input row in order (2020 CSVs as given, then ISIC 2019) and what was read, per input."""

    rows: List[Row]
    inputs: List[Dict]
    unlisted: int


def read_inputs(pairs: Sequence[Tuple[str, str]], isic2019: Optional[str]) -> Inputs:
    """Reads and validates the CSVs and lists the image folders (see `beam_jobs.melanoma_images`).

    Args:
        pairs: (csv, images folder) of each 2020 input.
        isic2019: the folder of the ISIC 2019 files, or None.
    """
    parts = []
    for csv_path, images in pairs:
        split, rows = read_2020(csv_path)
        parts.append(({"csv": csv_path, "images": images, "split": split,
                       "source": SOURCE_NAMES[melanoma_image.SOURCE_2020]}, rows, images))
    if isic2019:
        paths = paths_2019(isic2019)
        parts.append(({"csv": paths["ground_truth"], "metadata": paths["metadata"], "images": paths["images"],
                       "split": TRAIN, "source": SOURCE_NAMES[melanoma_image.SOURCE_2019]},
                      read_2019(isic2019), paths["images"]))
    # One image_name, one record: later rows naming it again are rejected, across inputs too.
    repeated = iter(reject_repeated_names([row for _, rows, _ in parts for row in rows]))
    everything, inputs, unlisted = [], [], 0
    for info, rows, images in parts:
        rows, missing = attach_images([next(repeated) for _ in rows], images,
                                      "--images" if info["source"] == "2020" else "the ISIC 2019 image folder")
        everything += rows
        unlisted += missing
        inputs.append({**info, "rows": len(rows), "unlisted": missing})
    return Inputs(everything, inputs, unlisted)


def _csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def train_csv(rows: Iterable[Row], listing: Dict[str, Dict]) -> str:
    """OUTPUT/train.csv: one line per converted training image, in input order (see the module doc)."""
    lines = []
    for row in rows:
        image = listing.get(row.image_name)
        if row.split != TRAIN or row.reason is not None or image is None:
            continue
        # A kept row's name is unique, so the listing entry is this row's image.
        lines.append([*(row.values[c] for c in TRAIN_COLUMNS),
                      image["shard"] if image["split"] == TRAIN else melanoma_image.MISSING, image["width"],
                      image["height"], SOURCE_NAMES[row.source], image["duplicate_of"], image["fold"]])
    return _csv_text(TRAIN_CSV_COLUMNS, lines)


def finalize(output: str, manifest: Dict, plan_shards: Dict[str, int], reports: List[Dict],
             rejected: List[Dict], shards_per_fold: int) -> Dict:
    """Renames the temporary shards to Deotte's names, writes rejected.jsonl and manifest.json.

    A planned shard that received no image (a tiny dataset over many shards) is written
    empty, so shard i is always in fold i // S.
    """
    written = {(r["split"], r["shard"]): r for r in reports}
    splits, sources, targets = {}, [], []
    for split in sorted(plan_shards, key=SPLIT_ORDER.index):
        names = []
        for shard in range(plan_shards[split]):
            report = written.get((split, shard))
            if report is None:
                report = {"records": 0, "path": shard_tmp_path(output, split, shard)}
                with FileSystems.create(report["path"]):
                    pass
            names.append(melanoma_image.shard_name(split, shard, report["records"]))
            sources.append(report["path"])
            targets.append(join(output, names[-1]))
        splits[split] = {"records": sum(written[(split, s)]["records"] for s in range(plan_shards[split])
                                        if (split, s) in written), "shards": names}
        if split == TRAIN:
            splits[split]["folds"] = [shard // shards_per_fold for shard in range(len(names))]
    if sources:
        FileSystems.rename(sources, targets)
    rejected = sorted(rejected, key=lambda r: (r["file"], r["offset"]))
    write_text_atomic(join(output, REJECTED), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected))
    manifest = {**manifest, "splits": splits, "rejected": len(rejected), "compression": "none"}
    write_manifest(output, manifest)
    FileSystems.delete([join(output, common.TMP)])
    return manifest


def _write_rows(output: str, elements: List[Dict]) -> str:
    path = common.tmp_path(output, ROWS)
    with FileSystems.create(path) as f:
        f.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in elements).encode("utf-8"))
    return path


def _parser(prog: str) -> ArgumentParser:
    parser = common.job_parser(
        prog, "Convert SIIM-ISIC melanoma JPEGs and CSVs (2020, optionally ISIC 2019) to melanoma_image TFRecords "
        "in Chris Deotte's layout, with triple-stratified folds and near-duplicates flagged.")
    parser.add_argument("--csv", action="append", required=True, metavar="CSV",
                        help="train.csv (has a target column) or test.csv; repeat, each with its --images")
    parser.add_argument("--images", action="append", required=True, metavar="DIR",
                        help="the folder of the previous --csv's <image_name>.jpg files (local or gs://)")
    parser.add_argument("--isic2019", metavar="DIR", help="ISIC 2019 training data as Kaggle ships it: "
                        "ISIC_2019_Training_GroundTruth.csv, ISIC_2019_Training_Metadata.csv and "
                        "ISIC_2019_Training_Input/")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--image-size", type=int, default=512, help="side of the square images (default 512)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the images (default 95)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--shards-per-fold", type=int, default=3, help="train shards per fold (default 3)")
    parser.add_argument("--test-shards", type=int, help="test shards (default: one per ~2000 images)")
    parser.add_argument("--duplicate-distance", type=int, default=DEFAULT_MAX_DISTANCE,
                        help="bits (of 256) in which two images' perceptual hashes may differ and still be "
                        f"flagged as one picture (default {DEFAULT_MAX_DISTANCE}; their DCT coefficients must "
                        f"also correlate at {MIN_CORRELATION} or more)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return parser


def _check_flags(args) -> None:
    if len(args.csv) != len(args.images):
        raise UserError(f"--csv and --images come in pairs: got {len(args.csv)} --csv and {len(args.images)} --images")
    for flag, value, low, high in (("--image-size", args.image_size, 16, 4096), ("--quality", args.quality, 1, 100),
                                   ("--folds", args.folds, 1, 100), ("--shards-per-fold", args.shards_per_fold, 1, 100),
                                   ("--test-shards", args.test_shards, 1, 10000),
                                   ("--duplicate-distance", args.duplicate_distance, 0, 256),
                                   ("--seed", args.seed, 0, 2 ** 32 - 1)):
        if value is not None and not low <= value <= high:
            raise UserError(f"{flag} must be in [{low}, {high}], got {value}")


def run(argv: Optional[List[str]] = None, prog: str = "python -m beam_jobs.melanoma_to_tfrecords") -> Dict:
    """Runs the conversion; returns the manifest. Raises UserError for bad flags or inputs.

    Example:

    >>> manifest = run(["--csv", "raw/train.csv", "--images", "raw/jpeg/train", "--isic2019", "raw/isic2019",
    ...                 "--output", "data/melanoma", "--image-size", "256"])
    >>> manifest["splits"]["train"]["shards"][0], manifest["duplicates"]
    ('train00-2182.tfrec', 12)
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, pipeline_args = common.parse_args(_parser(prog), argv)
    _check_flags(args)
    csvs = list(args.csv)
    if args.isic2019:
        paths = paths_2019(args.isic2019)
        csvs += [paths["ground_truth"], paths["metadata"]]
    common.check_inputs(csvs)
    inputs = read_inputs(list(zip(args.csv, args.images)), args.isic2019)
    options = common.pipeline_options(pipeline_args)
    common.prepare_output(args.output, args.overwrite, [*csvs, *args.images, *filter(None, [args.isic2019])])

    patients = patient_codes(inputs.rows)
    rows_path = _write_rows(args.output, [row_element(row, patients) for row in inputs.rows])
    with beam.Pipeline(options=options) as p:
        rows = (p | "ReadRows" >> beam.io.ReadFromText(rows_path) | "Parse" >> beam.Map(json.loads)
                | "Spread" >> beam.Reshuffle())
        converted, rejected = rows | "Convert" >> ConvertImages(args.image_size, args.quality)
        plan = converted | "Plan" >> PlanDataset(args.folds, args.shards_per_fold, args.seed, args.test_shards,
                                                 args.duplicate_distance)
        reports, listing = converted | "Write" >> WriteShards(args.output, plan)
        _ = (rejected | "CountRejected" >> beam.Map(common.CountAs(NAMESPACE, "rejected"))
             | "WriteRejected" >> common.WriteReport(args.output, "rejected"))
        _ = reports | "WriteShardList" >> common.WriteReport(args.output, "shards")
        _ = listing | "WriteListing" >> common.WriteReport(args.output, "images")
        _ = (plan | "PlanSummary" >> beam.Map(lambda plan: {"shards": plan.shards, "duplicates": plan.duplicates})
             | "WritePlan" >> common.WriteReport(args.output, "plan"))

    summary = common.read_report(args.output, "plan")[0]
    listing = {r["image_name"]: r for r in common.read_report(args.output, "images")}
    for column, values in VOCABULARIES.items():
        write_text_atomic(join(args.output, column + ".csv"), _csv_text(("code", "value"), enumerate(values)))
    write_classes(args.output, [{"class_index": i, "category_id": i, "name": name}
                                for i, name in enumerate(melanoma_image.CLASSES)])
    has_train = any(info["split"] == TRAIN for info in inputs.inputs)
    if has_train:
        write_text_atomic(join(args.output, TRAIN_CSV), train_csv(inputs.rows, listing))
    manifest = {
        "kind": melanoma_image.KIND,
        "schema_version": melanoma_image.SCHEMA_VERSION,
        "input_records": len(inputs.rows),
        "unlisted": inputs.unlisted,
        "duplicates": summary["duplicates"],
        "num_classes": len(melanoma_image.CLASSES),
        "folds": args.folds,
        "shards_per_fold": args.shards_per_fold,
        "image_size": args.image_size,
        "quality": args.quality,
        "duplicate_distance": args.duplicate_distance,
        "duplicate_correlation": MIN_CORRELATION,
        "seed": args.seed,
        "inputs": inputs.inputs,
        "vocabularies": {column: column + ".csv" for column in VOCABULARIES},
        **({"train_csv": TRAIN_CSV} if has_train else {}),
        "command": common.command_line(prog, argv),
    }
    return finalize(args.output, manifest, summary["shards"], common.read_report(args.output, "shards"),
                    common.read_report(args.output, "rejected"), args.shards_per_fold)


if __name__ == "__main__":
    sys.exit(common.run_installed("beam_jobs.melanoma_to_tfrecords"))
