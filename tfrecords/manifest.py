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
    if kind is not None and manifest.get("kind") != kind:
        raise UserError(f"{data_dir} holds {manifest.get('kind')!r} records, expected {kind!r}")
    if schema_version is not None and manifest.get("schema_version") != schema_version:
        raise UserError(
            f"{data_dir} has schema version {manifest.get('schema_version')} of {kind}, "
            f"this version of the toolkit reads {schema_version}: convert the data again"
        )
    return manifest


def shard_paths(data_dir: str, manifest: Dict, split: str) -> List[str]:
    if split not in manifest["splits"]:
        raise UserError(f"{data_dir} has no {split!r} split (it has {sorted(manifest['splits'])})")
    return [join(data_dir, name) for name in manifest["splits"][split]["shards"]]


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
    for row in rows:
        row["class_index"] = int(row["class_index"])
        row["category_id"] = int(row["category_id"])
    return rows
