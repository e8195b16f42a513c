"""The layout of one converted dataset directory, shared by writers and readers.

    manifest.json     kind, schema_version, input_records, rejected, splits, num_classes, command
    classes.csv       class_index,category_id[,names...], sorted by category_id
    rejected.jsonl    one JSON line per input record that could not be converted
    {split}-{i:05d}-of-{n:05d}.tfrecord[.gz]

`input_records == sum(split records) + rejected (+ filtered)` always holds;
`write_manifest` refuses to write a manifest where it does not. `filtered` counts
records a job drops on purpose (for example videos with no label in a requested
vocabulary); they are counted, not listed one by one.
"""

import csv
import io
import json
import posixpath
from typing import Dict, List, Optional

import tensorflow as tf

from tfrecords.errors import UserError

MANIFEST = "manifest.json"
CLASSES = "classes.csv"
REJECTED = "rejected.jsonl"
COMPRESSIONS = {"none": "", "gzip": "GZIP"}


def join(*parts: str) -> str:
    # posixpath keeps gs:// paths intact, which os.path.join would too on Linux only.
    return posixpath.join(*parts)


def shard_name(split: str, index: int, count: int, compression: str = "none") -> str:
    suffix = ".tfrecord.gz" if compression == "gzip" else ".tfrecord"
    return f"{split}-{index:05d}-of-{count:05d}{suffix}"


def write_text_atomic(path: str, text: str) -> None:
    """Writes to `path.tmp` and renames, so a reader never sees half a file."""
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def write_manifest(out_dir: str, manifest: Dict) -> None:
    written = sum(split["records"] for split in manifest["splits"].values())
    filtered = manifest.get("filtered", 0)
    if manifest["input_records"] != written + manifest["rejected"] + filtered:
        raise RuntimeError(
            f"records were lost: input_records={manifest['input_records']} but "
            f"written={written} + rejected={manifest['rejected']} + filtered={filtered}"
        )
    write_text_atomic(join(out_dir, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(data_dir: str, kind: Optional[str] = None, schema_version: Optional[int] = None) -> Dict:
    """Reads `data_dir/manifest.json`, checking the record kind and its version."""
    path = join(data_dir, MANIFEST)
    if not tf.io.gfile.exists(path):
        raise UserError(f"no {MANIFEST} in {data_dir}: is it a converted dataset directory?")
    with tf.io.gfile.GFile(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} is not valid JSON: {e}") from None
    _check_layout(path, manifest)
    if kind is not None and manifest.get("kind") != kind:
        raise UserError(f"{data_dir} holds {manifest.get('kind')!r} records, expected {kind!r}")
    if schema_version is not None and manifest.get("schema_version") != schema_version:
        raise UserError(
            f"{data_dir} has schema version {manifest.get('schema_version')} of {kind}, "
            f"this version of the toolkit reads {schema_version}: convert the data again"
        )
    return manifest


def _check_layout(path: str, manifest) -> None:
    """The keys every reader relies on, so a damaged or hand-edited manifest is one clear error."""
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: expected a JSON object")
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise UserError(f"{path} has no 'splits' mapping: is the conversion finished? Convert the data again")
    for split, info in splits.items():
        if not (isinstance(info, dict) and isinstance(info.get("records"), int)
                and isinstance(info.get("shards"), list) and all(isinstance(n, str) for n in info["shards"])):
            raise UserError(f"{path}: split {split!r} must have 'records' (an integer) and 'shards' (file names)")
    if manifest.get("compression", "none") not in COMPRESSIONS:
        raise UserError(f"{path}: unknown compression {manifest.get('compression')!r}")


def shard_paths(data_dir: str, manifest: Dict, split: str) -> List[str]:
    """The split's shard files; a shard the manifest lists but the directory lacks is one UserError."""
    if split not in manifest["splits"]:
        raise UserError(f"{data_dir} has no {split!r} split (it has {sorted(manifest['splits'])})")
    paths = [join(data_dir, name) for name in manifest["splits"][split]["shards"]]
    # One listing, not one request per shard (thousands of shards on gs://).
    present = {posixpath.basename(p.rstrip("/")) for p in tf.io.gfile.glob(join(data_dir, "*"))}
    missing = [p for p in paths if posixpath.basename(p) not in present]
    if missing:
        raise UserError(f"shard missing: {missing[0]} (listed in {join(data_dir, MANIFEST)}"
                        + (f", {len(missing) - 1} more missing" if len(missing) > 1 else "") + ")")
    return paths


def compression_type(manifest: Dict) -> str:
    """The `compression_type` argument of `tf.data.TFRecordDataset` for these shards."""
    return COMPRESSIONS[manifest.get("compression", "none")]


def write_classes(out_dir: str, rows: List[Dict]) -> None:
    """Writes classes.csv; `rows` are dicts with class_index, category_id and names."""
    buf = io.StringIO()
    fields = list(rows[0].keys()) if rows else ["class_index", "category_id"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(join(out_dir, CLASSES), buf.getvalue())


def read_classes(data_dir: str) -> List[Dict]:
    path = join(data_dir, CLASSES)
    if not tf.io.gfile.exists(path):
        raise UserError(f"no {CLASSES} in {data_dir}")
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.DictReader(f))
    for line, row in enumerate(rows, start=2):
        for column in ("class_index", "category_id"):
            try:
                row[column] = int(row[column])
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{path}:{line}: {column} {row.get(column)!r} is not an integer") from None
    if [row["class_index"] for row in rows] != list(range(len(rows))):
        raise UserError(f"{path}: class_index must count 0, 1, 2, ... in order")
    return rows


def check_same_classes(model_classes: List[Dict], model_path: str, data_dir: str) -> None:
    """Refuses data whose classes.csv differs from the model's: every score would be wrong.

    A model's class i means the category its training data called class i; on data with
    another vocabulary the labels would be compared against other categories.
    """
    data_classes = read_classes(data_dir)
    if [c["category_id"] for c in model_classes] != [c["category_id"] for c in data_classes]:
        raise UserError(f"{join(data_dir, CLASSES)} ({len(data_classes)} classes) differs from the model's "
                        f"{join(model_path, CLASSES)} ({len(model_classes)} classes): the model was trained "
                        "on other data")
