"""The toy conversion job: `points.csv` (id,x0..x3,label; label empty for test) -> shards + manifest."""

import csv
import os

import tensorflow as tf

from tfrecords import ArgumentParser
from tfrecords.manifest import shard_name, write_classes, write_manifest
from toy_competition import kind


def run(argv, prog="toy convert"):
    parser = ArgumentParser(prog=prog)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    rows = list(csv.DictReader(open(args.input)))
    splits = {"train": [], "val": [], "test": []}
    for row in rows:
        point_id = int(row["id"])
        split = "test" if row["label"] == "" else ("val" if point_id % 5 == 0 else "train")
        label = -1 if row["label"] == "" else int(row["label"])
        splits[split].append(kind.encode(point_id, [float(row[f"x{i}"]) for i in range(kind.DIM)], label))
    os.makedirs(args.output, exist_ok=True)
    for split, records in splits.items():
        with tf.io.TFRecordWriter(os.path.join(args.output, shard_name(split, 0, 1))) as writer:
            for record in records:
                writer.write(record)
    write_classes(args.output, [{"class_index": i, "category_id": 100 + i} for i in range(3)])
    manifest = {"kind": kind.KIND, "schema_version": kind.SCHEMA_VERSION, "input_records": len(rows),
                "rejected": 0, "num_classes": 3, "compression": "none",
                "splits": {s: {"records": len(r), "shards": [shard_name(s, 0, 1)]} for s, r in splits.items()}}
    write_manifest(args.output, manifest)
    return manifest
